"""What a client is told about each limit breach: teams.limits reports the facts, the
pipeline's `limit_exceeded` chooses status, type, code and message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from synapse.errors import limit_exceeded, rate_limited
from teams.limits import Breach, BreachKind


@pytest.mark.parametrize(
    ("kind", "error_type", "whose"),
    [
        (BreachKind.RPM, "requests", "this API key:"),
        (BreachKind.TEAM_RPM, "requests", "this API key's team:"),
        (BreachKind.TPM, "tokens", "this API key:"),
        (BreachKind.TEAM_TPM, "tokens", "this API key's team:"),
    ],
)
def test_it_names_the_per_minute_limit_by_its_kind(kind: BreachKind, error_type: str, whose: str) -> None:
    error = limit_exceeded(Breach(kind, limit=10, needed=500, retry_after=7))
    assert (error.status, error.type, error.code, error.decision) == (429, error_type, "rate_limit_exceeded", "blocked_limit")
    assert whose in error.message and error.headers == {"retry-after": "7"}
    assert ("500 tokens" in error.message) is (error_type == "tokens")


def test_it_refuses_a_budget_with_402_and_the_renewal_only() -> None:
    renews = datetime(2026, 1, 1, tzinfo=UTC)
    error = limit_exceeded(Breach(BreachKind.TEAM_BUDGET, renews_at=renews))
    assert (error.status, error.code, error.decision) == (402, "budget_exceeded", "blocked_budget")
    assert "this API key's team" in error.message and renews.isoformat() in error.message


def test_it_refuses_per_request_caps_with_400() -> None:
    messages = limit_exceeded(Breach(BreachKind.MAX_MESSAGES, limit=2, needed=3))
    assert (messages.status, messages.code, messages.param) == (400, "too_many_messages", "messages")
    assert messages.message == "This API key allows at most 2 messages per request."


def test_it_will_not_call_a_budget_a_rate_limit() -> None:
    with pytest.raises(ValueError, match="budget"):
        rate_limited("over", kind=BreachKind.BUDGET, retry_after=1)
