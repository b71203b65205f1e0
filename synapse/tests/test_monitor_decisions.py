"""Monitor mode records `monitor_<decision>` for every refusal that goes through `enforce`,
and each of those is a declared Decision (so the audit console can name and filter it)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.utils import timezone

from audit.models import Decision
from synapse.context import RequestContext
from synapse.errors import (
    GatewayError,
    dlp_blocked,
    dlp_response_blocked,
    dlp_unreadable_content,
    limit_exceeded,
    limits_unavailable,
)
from teams.limits import Breach, BreachKind

ENFORCED = [
    limits_unavailable(),
    dlp_blocked(("EMAIL",)),
    dlp_unreadable_content(["image"]),
    dlp_response_blocked(("EMAIL",)),
    *(limit_exceeded(Breach(kind, limit=1, needed=2, renews_at=timezone.now())) for kind in BreachKind),
]


def context(*, monitor: bool) -> RequestContext:
    ctx = RequestContext(
        request_id="req_test", endpoint="chat.completions", method="POST", path="/v1/chat/completions",
        client_ip="127.0.0.1", user_agent="t", received_at=timezone.now(),
    )  # fmt: skip
    ctx.key = SimpleNamespace(is_monitor=monitor)  # type: ignore[assignment]  # a stand-in: only is_monitor is read
    return ctx


@pytest.mark.parametrize("refusal", ENFORCED, ids=lambda r: r.code)
def test_it_records_a_declared_monitor_decision_for_every_enforced_refusal(refusal: GatewayError) -> None:
    ctx = context(monitor=True)
    ctx.enforce(refusal)  # does not raise: monitor mode lets the request go
    assert ctx.decision == f"monitor_{refusal.decision}" and ctx.decision in Decision.values
    assert ctx.decision.is_monitored and ctx.error_code == refusal.code


def test_it_keeps_the_first_monitored_decision_and_raises_in_enforce_mode() -> None:
    ctx = context(monitor=True)
    ctx.enforce(dlp_blocked(("EMAIL",)))
    ctx.enforce(limits_unavailable())
    assert ctx.decision == Decision.MONITOR_BLOCKED_DLP and ctx.error_message.count("monitor mode") == 2
    with pytest.raises(GatewayError):
        context(monitor=False).enforce(dlp_blocked(("EMAIL",)))
