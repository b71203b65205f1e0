"""Reservation and settlement against the real counter store (the test database)."""

from __future__ import annotations

import uuid
import zlib
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import django_ratelimit.core
import pytest
from django.core.cache import caches
from django.utils import timezone

from audit.services import audit_record_request
from synapse.audit_record import request_record
from synapse.context import RequestContext
from synapse.errors import limit_exceeded
from teams.budgets import to_nano
from teams.limits import Reservation, limits_reserve, limits_settle
from teams.models import Team
from teams.selectors import KeyScope, api_key_authenticate
from teams.services import IssuedKey, api_key_issue, team_update

pytestmark = pytest.mark.django_db

PRICES: dict[str, Any] = {"input_price_per_mtok": Decimal("10"), "output_price_per_mtok": Decimal("30")}


def _key(team: Team, **limits: Any) -> KeyScope:
    issued = api_key_issue(
        team=team,
        name=f"limited {uuid.uuid4().hex[:6]}",  # one team may not hold two active keys of one name
        system_prompt="Be brief.",
        models=["mock-small"],
        classification="sensitive",
        **limits,
    )
    scope = api_key_authenticate(issued.plaintext)
    assert scope is not None
    return scope


def _chat(text: str = "hello there", **extra: object) -> dict[str, Any]:
    return {"model": "mock-small", "messages": [{"role": "user", "content": text}], **extra}


def _reserve(scope: KeyScope, body: dict[str, Any], model: str = "gpt-4o-mini") -> Reservation:
    return limits_reserve(scope=scope, endpoint="chat.completions", body=body, model=model, system_prompt="Be brief.", **PRICES)


def test_it_counts_the_bound_prompt_exactly_for_openai_models(team: Team, routing: None) -> None:
    scope = _key(team, tpm=10_000)
    reservation = _reserve(scope, _chat("Hello world", max_tokens=7))
    # 2 messages × 3 + roles (1 each) + "Be brief." (3) + "Hello world" (2) + 3 priming, o200k_base.
    assert reservation.prompt is not None and reservation.prompt.exact and reservation.prompt.encoding == "o200k_base"
    assert reservation.prompt.tokens == 2 * 3 + 2 + 3 + 2 + 3
    assert reservation.completion_cap == 7
    assert reservation.reserved_tokens == reservation.prompt.tokens + 7


def test_it_estimates_conservatively_for_other_models(team: Team, routing: None) -> None:
    scope = _key(team)
    exact = _reserve(scope, _chat("The quick brown fox jumps over the lazy dog " * 20), model="gpt-4")
    estimate = _reserve(scope, _chat("The quick brown fox jumps over the lazy dog " * 20), model="meta-llama/Llama-3-8B")
    assert estimate.prompt is not None and exact.prompt is not None and not estimate.prompt.exact
    assert estimate.prompt.tokens >= exact.prompt.tokens * 1.3


def test_it_clamps_max_tokens_to_the_keys_ceiling(team: Team, routing: None) -> None:
    scope = _key(team, max_tokens=50)
    assert _reserve(scope, _chat(max_tokens=4000)).clamps == {"max_tokens": 50}
    assert _reserve(scope, _chat(max_completion_tokens=4000)).clamps == {"max_completion_tokens": 50}
    assert _reserve(scope, _chat()).clamps == {"max_tokens": 50}  # unset: the ceiling is sent
    within = _reserve(scope, _chat(max_tokens=20))
    assert within.clamps == {} and within.completion_cap == 20


def test_it_clamps_both_output_caps_when_both_are_sent(team: Team, routing: None) -> None:
    # Before: only max_completion_tokens was clamped, and max_tokens=4000 went upstream as sent.
    scope = _key(team, max_tokens=50)
    both = _reserve(scope, _chat(max_tokens=4000, max_completion_tokens=4000))
    assert both.clamps == {"max_tokens": 50, "max_completion_tokens": 50} and both.completion_cap == 50
    mixed = _reserve(scope, _chat(max_tokens=10, max_completion_tokens=4000))
    assert mixed.clamps == {"max_completion_tokens": 50} and mixed.completion_cap == 50


def test_a_budget_or_tpm_sends_the_reserved_cap_upstream(team: Team, routing: None, settings: Any) -> None:
    # Before: 1,024 tokens were held but the upstream was not told, and answered 3,000.
    settings.SYNAPSE = {**settings.SYNAPSE, "DEFAULT_COMPLETION_RESERVE": 300}
    for limits in ({"budget": Decimal("5")}, {"tpm": 100_000}):
        reservation = _reserve(_key(team, **limits), _chat())
        assert reservation.clamps == {"max_tokens": 300} and reservation.completion_cap == 300
    assert _reserve(_key(team), _chat()).clamps == {}  # nothing counts tokens: nothing to hold to


def test_it_refuses_too_many_messages_and_too_long_prompts(team: Team, routing: None) -> None:
    scope = _key(team, max_messages=2, max_prompt_tokens=30)
    body = {"model": "m", "messages": [{"role": "user", "content": "a"}] * 3}
    assert [b.kind for b in _reserve(scope, body).breaches] == ["max_messages"]
    long = _reserve(scope, _chat("word " * 100))
    assert [b.kind for b in long.breaches] == ["max_prompt_tokens"]
    error = limit_exceeded(long.breaches[0])
    assert (error.status, error.code) == (400, "prompt_too_long")
    assert long.prompt is not None
    assert error.message == f"The prompt is about {long.prompt.tokens} tokens; this API key allows at most 30 per request."


def test_it_holds_tokens_per_minute_then_settles_to_the_real_usage(team: Team, routing: None) -> None:
    scope = _key(team, tpm=100)
    first = _reserve(scope, _chat(max_tokens=40))
    held = first.reserved_tokens
    assert first.tokens is not None and first.tokens.remaining == 100 - held and not first.breaches
    second = _reserve(scope, _chat(max_tokens=40))
    assert first.reserved_tokens * 2 <= 100 or second.breaches  # consistent either way
    refused = _reserve(scope, _chat(max_tokens=90))
    assert [b.kind for b in refused.breaches] == ["tpm"]
    error = limit_exceeded(refused.breaches[0])
    assert (error.status, error.type) == (429, "tokens")
    assert error.headers["retry-after"] == str(max(1, refused.breaches[0].retry_after))
    assert refused.token_holds == []  # nothing held for a refused request
    # Settling the first with its real (small) usage frees the rest of its hold.
    limits_settle(first, prompt_tokens=10, completion_tokens=2, cost=None, reached_upstream=True)
    limits_settle(second, prompt_tokens=None, completion_tokens=None, cost=None, reached_upstream=False)
    third = _reserve(scope, _chat(max_tokens=40))
    assert third.tokens is not None and third.tokens.remaining == 100 - 12 - third.reserved_tokens


def test_it_checks_a_budget_with_the_worst_case_and_refuses_with_402(team: Team, routing: None) -> None:
    # Worst case per request: ~20 prompt tokens × $10/M + 1000 × $30/M ≈ $0.0302.
    scope = _key(team, budget=Decimal("0.10"), max_tokens=1000)
    held = [_reserve(scope, _chat()) for _ in range(3)]
    assert all(not r.breaches for r in held)
    fourth = _reserve(scope, _chat())
    assert [b.kind for b in fourth.breaches] == ["budget"]
    error = limit_exceeded(fourth.breaches[0])
    assert error.status == 402 and error.code == "budget_exceeded" and "$" not in error.message
    # Settle one with a tiny real cost: room opens for another worst case.
    limits_settle(held[0], prompt_tokens=20, completion_tokens=5, cost=Decimal("0.00035"), reached_upstream=True)
    assert not _reserve(scope, _chat()).breaches


def test_it_seeds_the_spend_counter_from_the_audit_log(team: Team, routing: None) -> None:
    team_update(team=team, changes={"budget": Decimal("1.00")})
    scope = _key(team)
    ctx = RequestContext(
        request_id="req_seed", endpoint="chat.completions", method="POST", path="/v1/chat/completions",
        client_ip="127.0.0.1", user_agent="t", received_at=timezone.now(), key=scope,
    )  # fmt: skip
    ctx.cost = Decimal("0.99")
    audit_record_request(record=request_record(ctx))
    reservation = _reserve(scope, _chat(max_tokens=1000))
    assert [b.kind for b in reservation.breaches] == ["team_budget"]  # 0.99 recorded + ~0.03 worst case > 1.00
    counter = f"spend:team:{team.pk}:{_period_start(scope):%Y%m%d}"
    assert caches["counters"].get(counter) == to_nano(Decimal("0.99"))


def _period_start(scope: KeyScope) -> datetime:
    from teams.periods import period_bounds

    return period_bounds(period=scope.budget_period, zone=scope.zone(), at=timezone.now())[0]


def test_monitor_mode_counts_and_reports_but_keeps_the_holds(team: Team, routing: None) -> None:
    scope = _key(team, tpm=30, enforcement="monitor")
    _reserve(scope, _chat(max_tokens=20))
    second = _reserve(scope, _chat(max_tokens=20))
    assert [b.kind for b in second.breaches] == ["tpm"] and second.token_holds  # held anyway: it will run


def test_periods_are_calendar_aligned_in_the_team_time_zone() -> None:
    from zoneinfo import ZoneInfo

    from teams.periods import period_bounds

    berlin = ZoneInfo("Europe/Berlin")
    at = datetime(2026, 3, 31, 22, 30, tzinfo=UTC)  # already 1 April in Berlin
    start, end = period_bounds(period="month", zone=berlin, at=at)
    assert (start.isoformat(), end.isoformat()) == ("2026-04-01T00:00:00+02:00", "2026-05-01T00:00:00+02:00")
    start, end = period_bounds(period="week", zone=berlin, at=at)
    assert (start.date().isoformat(), end.date().isoformat()) == ("2026-03-30", "2026-04-06")


def test_the_new_limits_are_part_of_the_sealed_binding(sensitive_key: IssuedKey) -> None:
    from django.db import DatabaseError, transaction

    from teams.models import ApiKey

    for column, value in (("enforcement", "monitor"), ("budget", Decimal(5)), ("max_messages", 3), ("max_prompt_tokens", 9)):
        with pytest.raises(DatabaseError), transaction.atomic():
            ApiKey.objects.filter(pk=sensitive_key.api_key.pk).update(**{column: value})


@pytest.mark.sqlite
def test_the_new_limits_are_sealed_on_sqlite_too(sensitive_key: IssuedKey) -> None:
    test_the_new_limits_are_part_of_the_sealed_binding(sensitive_key)


def test_a_window_read_as_its_second_ends_is_not_a_store_failure(
    team: Team, routing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # django-ratelimit computes the window, then time_left = window - now: when the second
    # ticks in between on a window's last second, time_left is -1 on a healthy store.
    scope = _key(team, rpm=5)
    now = 1_800_000_000
    last_second = now - now % 60 + zlib.crc32(f"k{scope.key_id}".encode()) % 60
    ticks = iter([last_second, *[last_second + 1] * 10])
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=lambda: next(ticks)))
    reservation = _reserve(scope, _chat())
    assert not reservation.unavailable and not reservation.breaches
    assert reservation.requests is not None and reservation.requests.remaining == 4
