"""Each anomaly rule fires once per incident and stays silent for its cooldown.

Requests are finished the way the pipeline's audit hop finishes them (`finish_request`: the
audit row, then `alerts_observe_request`), on the real counter store of the test database.
Cooldowns are waited out by moving the counter store's clock (`advance_counter_clock`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.utils import timezone

from alerts import services
from alerts.models import Alert, AlertKind, AnomalyRule
from alerts.services import alerts_observe_request
from audit.models import Decision
from dlp.services import pack_apply
from teams.limits import SpendLevel, budget_scopes, limits_reserve, limits_settle
from teams.models import Team
from teams.services import IssuedKey, team_create, team_update

from .conftest import advance_counter_clock, finish_request, issue_scope

pytestmark = pytest.mark.django_db

OnlyRule = Callable[..., AnomalyRule]
PRICES: dict[str, Any] = {"input_price_per_mtok": Decimal("10"), "output_price_per_mtok": Decimal("30")}


def alerts(kind: str) -> list[Alert]:
    return list(Alert.objects.filter(kind=kind).order_by("fired_at", "pk"))


# ── usage spike ──


def test_a_usage_spike_fires_once_and_respects_its_cooldown(team: Team, routing: None, only_rule: OnlyRule) -> None:
    only_rule(AlertKind.USAGE_SPIKE, threshold=8, window_minutes=5, factor=5.0, baseline_minutes=60, cooldown_minutes=60)
    scope = issue_scope(team)
    at = timezone.now()
    # Baseline: 12 requests over the hour before the window (1 per 5 minutes) ...
    for minutes in range(8, 68, 5):
        finish_request(scope, at=at - timedelta(minutes=minutes), tokens=10)
    assert alerts(AlertKind.USAGE_SPIKE) == []
    # ... then 8 in the last 5 minutes: 8 times the baseline. The last one is the minute's check.
    for seconds in range(7, 0, -1):
        finish_request(scope, at=at - timedelta(minutes=1, seconds=seconds * 20), tokens=10)
    fired = finish_request(scope, at=at, tokens=10)
    [alert] = alerts(AlertKind.USAGE_SPIKE)
    assert fired == [alert] and alert.key_id == scope.key_id and alert.team_id == scope.team_id
    assert alert.detail["requests"] == 8 and alert.detail["baseline_requests"] == 1.0
    # The spike goes on: the next minutes' checks are inside the cooldown.
    for minute in (1, 2, 3):
        assert finish_request(scope, at=at + timedelta(minutes=minute), tokens=10) == []
    assert len(alerts(AlertKind.USAGE_SPIKE)) == 1
    # An hour later (the cooldown) the still-spiking key is a new incident.
    advance_counter_clock(3600)
    later = at + timedelta(minutes=4)
    fired = [finish_request(scope, at=later - timedelta(seconds=step * 20), tokens=10) for step in range(8, -1, -1)]
    assert sum(len(alerts_of_one) for alerts_of_one in fired) == 1
    assert len(alerts(AlertKind.USAGE_SPIKE)) == 2


@pytest.mark.parametrize("tokens", [10, None])
def test_steady_traffic_is_not_a_spike(tokens: int | None, team: Team, routing: None, only_rule: OnlyRule) -> None:
    """Steady traffic (2 per 5 minutes, then 8 in the window) is 4 × the baseline, under the factor of 5.

    Without tokens (refusals, a backend that reports no usage) 0 tokens is not "5 × 0 tokens".
    """
    only_rule(AlertKind.USAGE_SPIKE, threshold=8, window_minutes=5, factor=5.0, baseline_minutes=60)
    scope = issue_scope(team)
    at = timezone.now()
    for seconds in range(6 * 60, 65 * 60, 150):
        finish_request(scope, at=at - timedelta(seconds=seconds), tokens=tokens)
    # Kept out of `at`'s minute, so the request at `at` is that minute's check.
    for step in range(7):
        finish_request(scope, at=at - timedelta(seconds=65 + step * 25), tokens=tokens)
    assert finish_request(scope, at=at, tokens=tokens) == []
    assert alerts(AlertKind.USAGE_SPIKE) == []


# ── repeated DLP blocks ──


@pytest.mark.sqlite
def test_repeated_dlp_blocks_fire_once_and_respect_the_cooldown(team: Team, routing: None, only_rule: OnlyRule) -> None:
    only_rule(AlertKind.DLP_BLOCKS, threshold=5, window_minutes=10, cooldown_minutes=30)
    scope, other = issue_scope(team), issue_scope(team)
    at = timezone.now()
    # Blocks older than the window and another key's blocks do not count; monitor-mode ones do.
    finish_request(scope, at=at - timedelta(minutes=25), decision="blocked_dlp")
    finish_request(other, at=at - timedelta(minutes=3), decision="blocked_dlp")
    decisions = ["blocked_dlp", "monitor_blocked_dlp", "allowed", "blocked_dlp", "blocked_dlp"]
    for minute, decision in enumerate(decisions):
        assert finish_request(scope, at=at - timedelta(minutes=9 - minute), decision=decision) == []
    [alert] = finish_request(scope, at=at, decision="blocked_dlp")  # the 5th block within 10 minutes
    assert alert.kind == AlertKind.DLP_BLOCKS and alert.key_id == scope.key_id and alert.detail["blocks"] == 5
    for second in range(1, 6):
        assert finish_request(scope, at=at + timedelta(seconds=second), decision="blocked_dlp") == []
    assert len(alerts(AlertKind.DLP_BLOCKS)) == 1
    advance_counter_clock(30 * 60)
    assert len(finish_request(scope, at=at + timedelta(seconds=10), decision="blocked_dlp")) == 1
    assert len(alerts(AlertKind.DLP_BLOCKS)) == 2


# ── off-hours burst, in the team's time zone ──


def test_an_off_hours_burst_is_counted_in_the_teams_time_zone(team: Team, routing: None, only_rule: OnlyRule) -> None:
    only_rule(AlertKind.OFF_HOURS, threshold=5, window_minutes=180, cooldown_minutes=120)
    team_update(team=team, changes={"time_zone": "Asia/Tokyo"})  # business hours: the default 08:00-18:00, Mon-Fri
    tokyo = issue_scope(team)
    london = issue_scope(team_create(name="london", owner_email="ops@example.com"))  # the server's zone, UTC
    # Wednesday 18 Nov 2026, 09:00 UTC = 18:00 in Tokyo: the Tokyo team's evening begins.
    evening = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
    # Three requests just before 18:00 Tokyo time are business hours: not part of the burst.
    for minutes in (3, 2, 1):
        assert finish_request(tokyo, at=evening - timedelta(minutes=minutes)) == []
    for minutes in (5, 15, 25, 35):
        assert finish_request(tokyo, at=evening + timedelta(minutes=minutes)) == []
        assert finish_request(london, at=evening + timedelta(minutes=minutes)) == []  # 09:xx in London: working hours
    [alert] = finish_request(tokyo, at=evening + timedelta(minutes=45))  # the 5th since 18:00 Tokyo time
    assert alert.kind == AlertKind.OFF_HOURS and alert.team_id == tokyo.team_id
    assert alert.detail["requests"] == 5 and alert.detail["time_zone"] == "Asia/Tokyo"
    assert datetime.fromisoformat(alert.detail["since"]) == evening
    assert finish_request(london, at=evening + timedelta(minutes=45)) == []
    for minutes in range(46, 60):
        assert finish_request(tokyo, at=evening + timedelta(minutes=minutes)) == []
    assert len(alerts(AlertKind.OFF_HOURS)) == 1
    advance_counter_clock(120 * 60)
    assert len(finish_request(tokyo, at=evening + timedelta(minutes=61))) == 1
    assert len(alerts(AlertKind.OFF_HOURS)) == 2


# ── budget thresholds ──


@pytest.mark.sqlite
def test_it_raises_each_budget_threshold_once_per_period(team: Team, routing: None, only_rule: OnlyRule) -> None:
    only_rule(AlertKind.BUDGET_THRESHOLD)
    scope = issue_scope(team, budget=Decimal("1.00"), max_tokens=10)
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    now = timezone.now()

    def spend(cost: str, *, at: datetime) -> list[Alert]:
        """One request that costs `cost`: reserved, settled, audited, observed."""
        reservation = limits_reserve(scope=scope, endpoint="chat.completions", body=chat, model="gpt-4o-mini", now=at, **PRICES)
        assert not reservation.breaches
        levels = limits_settle(reservation, prompt_tokens=10, completion_tokens=5, cost=Decimal(cost), reached_upstream=True)
        return finish_request(scope, at=at, tokens=15, spend=levels, cost=Decimal(cost))

    assert spend("0.30", at=now) == []
    assert [a.detail["percent"] for a in spend("0.25", at=now)] == [50]  # 55 %
    assert spend("0.10", at=now) == []  # 65 %: 50 % was said
    assert [a.detail["percent"] for a in spend("0.20", at=now)] == [80]  # 85 %
    assert spend("0.05", at=now) == []  # 90 %
    [full] = spend("0.10", at=now)  # 100 %
    assert full.detail["percent"] == 100 and full.severity == "critical" and full.key_id == scope.key_id
    # Another worker that never saw these (its memo is empty) cannot raise them again: the
    # database holds one row per budget, period and threshold.
    services._thresholds_seen.clear()
    [budget] = budget_scopes(scope, now=now)
    levels = [SpendLevel(budget, 10**9)]
    assert alerts_observe_request(key=scope, decision=Decision.ALLOWED, client_ip="", at=now, spend=levels) == []
    assert sorted(a.detail["percent"] for a in alerts(AlertKind.BUDGET_THRESHOLD)) == [50, 80, 100]
    # The next period starts from nothing: its 50 % is a new alert.
    next_period = budget.end + timedelta(days=1)
    [again] = spend("0.60", at=next_period)
    assert again.detail["percent"] == 50 and again.detail["period_start"] == budget.end.isoformat()
    assert len(alerts(AlertKind.BUDGET_THRESHOLD)) == 4


# ── repeated authentication failures from one address ──


@pytest.mark.sqlite
def test_repeated_auth_failures_from_one_address_fire_once(db: None, only_rule: OnlyRule) -> None:
    only_rule(AlertKind.AUTH_FAILURES, threshold=10, window_minutes=5, cooldown_minutes=30)
    at = datetime(2026, 11, 18, 9, 1, tzinfo=UTC)  # the start of a 5-minute window
    for second in range(9):
        assert finish_request(None, at=at + timedelta(seconds=second), decision="blocked_auth", client_ip="203.0.113.7") == []
        assert finish_request(None, at=at + timedelta(seconds=second), decision="blocked_auth", client_ip="203.0.113.8") == []
    [alert] = finish_request(None, at=at + timedelta(seconds=30), decision="blocked_auth", client_ip="203.0.113.7")
    assert alert.subject == "203.0.113.7" and alert.severity == "critical" and alert.detail["failures"] == 10
    for second in range(31, 40):
        assert finish_request(None, at=at + timedelta(seconds=second), decision="blocked_auth", client_ip="203.0.113.7") == []
    assert len(alerts(AlertKind.AUTH_FAILURES)) == 1
    # The other address made 9: below the threshold, and its own incident when it reaches it.
    [other] = finish_request(None, at=at + timedelta(seconds=40), decision="blocked_auth", client_ip="203.0.113.8")
    assert other.subject == "203.0.113.8"
    advance_counter_clock(30 * 60)
    later = at + timedelta(minutes=30)
    fired = [finish_request(None, at=later, decision="blocked_auth", client_ip="203.0.113.7") for _ in range(10)]
    assert [len(f) for f in fired] == [0] * 9 + [1]


def test_auth_failures_through_the_gateway_raise_one_alert(db: None, only_rule: OnlyRule) -> None:
    only_rule(AlertKind.AUTH_FAILURES, threshold=10, window_minutes=5, cooldown_minutes=30)
    client = AsyncClient()
    # 20 tries: even if a 5-minute window ends in the middle, one window holds 10 of them.
    for attempt in range(20):
        response = async_to_sync(client.post)(
            "/v1/chat/completions",
            data='{"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}',
            content_type="application/json",
            headers={"authorization": f"Bearer syn_nosuchkey_{attempt}"},
        )
        assert response.status_code == 401
    [alert] = alerts(AlertKind.AUTH_FAILURES)
    assert alert.subject == "127.0.0.1" and alert.detail["failures"] >= 10


# ── refusals of limits ──


def test_a_limit_breach_is_one_alert_per_cooldown(team: Team, routing: None, only_rule: OnlyRule) -> None:
    only_rule(AlertKind.LIMIT_BREACH, cooldown_minutes=30)
    scope = issue_scope(team, enforcement="monitor")
    at = timezone.now()
    [alert] = finish_request(scope, at=at, decision="monitor_blocked_limit")
    assert alert.detail == {"decision": "monitor_blocked_limit", "monitor": True} and "monitor mode" in alert.title
    assert finish_request(scope, at=at, decision="monitor_blocked_budget") == []
    advance_counter_clock(30 * 60)
    assert len(finish_request(scope, at=at, decision="monitor_blocked_limit")) == 1


def test_a_disabled_rule_stays_silent(team: Team, routing: None, only_rule: OnlyRule) -> None:
    only_rule(AlertKind.LIMIT_BREACH, enabled=False)
    scope = issue_scope(team)
    assert finish_request(scope, at=timezone.now(), decision="blocked_limit") == []
    assert not Alert.objects.exists()


def test_dlp_blocks_through_the_gateway_raise_one_alert(sensitive_key: IssuedKey, only_rule: OnlyRule) -> None:
    pack_apply(name_or_path="baseline")  # a transactional test before this one may have flushed it
    only_rule(AlertKind.DLP_BLOCKS, threshold=3, window_minutes=10, cooldown_minutes=30)
    client = AsyncClient()
    for _ in range(5):
        response = async_to_sync(client.post)(
            "/v1/chat/completions",
            data=json.dumps(
                {"model": "mock-small", "messages": [{"role": "user", "content": "deploy with AKIAZ7Q4MB2KXN5PLR3W"}]}
            ),
            content_type="application/json",
            headers={"authorization": f"Bearer {sensitive_key.plaintext}"},
        )
        assert response.status_code == 400 and response.json()["error"]["code"] == "dlp_blocked"
    [alert] = alerts(AlertKind.DLP_BLOCKS)
    assert alert.key_id == sensitive_key.api_key.pk and alert.detail["blocks"] == 3 and alert.detail["monitor"] is False


def test_it_forgets_the_oldest_thresholds_seen_past_its_limit() -> None:
    seen = services._Seen(limit=3)
    for entry in ("a", "b", "c", "b", "d"):  # "b" seen again: now the newest
        seen.add(entry)
    assert len(seen) == 3 and "a" not in seen and all(e in seen for e in ("b", "c", "d"))
    assert services._thresholds_seen.limit == 10_000
