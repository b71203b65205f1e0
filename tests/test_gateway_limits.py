"""Limits end to end: the real server (gunicorn, 2 uvicorn workers) and the real counter stores.

Rate windows are fixed per-key minutes (django-ratelimit's); a test that must stay inside one
window first waits for a fresh one if fewer than 20 s are left. That wait is set-up, not an
assertion: nothing here measures time.
"""

from __future__ import annotations

import socket
import time
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from alerts.models import Alert
from audit.models import AuditEvent
from conftest import Gateway, database_url_for_tests, start_gateway, stop_gateway
from routing.models import Backend, Model
from teams.models import Team
from teams.services import IssuedKey, api_key_issue
from teams.tokens import count_chat
from tests.fakes.openai import FakeOpenAI
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

REDIS_URL = "redis://127.0.0.1:6379/15"


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def redis_gateway(django_db_setup, django_db_blocker) -> Iterator[Gateway]:
    if not _redis_up():
        pytest.skip("Redis is not running at 127.0.0.1:6379")
    with django_db_blocker.unblock():
        url = database_url_for_tests()
    # A fresh key prefix per run: counters from an earlier run must not leak in.
    server = start_gateway(
        database_url=url, extra_env={"REDIS_URL": REDIS_URL, "SYNAPSE_REDIS_PREFIX": f"t{uuid.uuid4().hex[:8]}"}
    )
    yield server
    stop_gateway(server)


def issue(team: Team, models: list[str], **limits: Any) -> IssuedKey:
    return api_key_issue(
        team=team,
        name=f"limited {uuid.uuid4().hex[:6]}",
        system_prompt="You write marketing copy.",
        models=models,
        classification="non_sensitive",
        **limits,
    )


def fresh_window(issued: IssuedKey, *, needed: int = 20) -> None:
    """Wait (if needed) until this key's per-minute window has `needed` seconds left."""
    ident = f"k{issued.api_key.pk}"
    now = int(time.time())
    end = now - (now % 60) + (zlib.crc32(ident.encode()) % 60)
    end = end + 60 if end < now else end
    if end - time.time() < needed:
        # The window ending at `end` still counts during that whole second (django-ratelimit
        # compares whole seconds), so wait until the next second has begun.
        time.sleep(end - time.time() + 1.2)


def chat(gateway: Gateway, key: str, model: str = "mock-small", **body: object) -> httpx.Response:
    payload = {"model": model, "messages": [{"role": "user", "content": "stream this please"}], **body}
    # A new connection per request, so the two workers share the load.
    return httpx.post(f"{gateway.v1}/chat/completions", json=payload, headers={"authorization": f"Bearer {key}"}, timeout=30)


@pytest.mark.sqlite
@pytest.mark.parametrize("store", ["database", "redis"])
def test_rpm_is_exact_across_workers(store: str, request: pytest.FixtureRequest, team: Team, routing: None) -> None:
    gateway: Gateway = request.getfixturevalue("gateway" if store == "database" else "redis_gateway")
    issued = issue(team, ["mock-small"], rpm=20)
    fresh_window(issued)
    with ThreadPoolExecutor(max_workers=60) as pool:
        responses = list(pool.map(lambda _: chat(gateway, issued.plaintext), range(60)))
    statuses = sorted(r.status_code for r in responses)
    others = [r.text for r in responses if r.status_code not in (200, 429)]
    assert statuses.count(200) == 20 and statuses.count(429) == 40, others[:3]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded" and int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "20" and refused.headers["x-ratelimit-remaining-requests"] == "0"
    rows = AuditEvent.objects.filter(event_type="request", key_id=issued.api_key.pk)
    assert rows.filter(decision="allowed").count() == 20 and rows.filter(decision="blocked_limit", status=429).count() == 40


def test_every_answer_to_a_limited_key_carries_openais_rate_headers(gateway: Gateway, team: Team, routing: None) -> None:
    issued = issue(team, ["mock-small"], rpm=100, tpm=100_000)
    fresh_window(issued)
    first, second = chat(gateway, issued.plaintext), chat(gateway, issued.plaintext)
    assert first.headers["x-ratelimit-limit-requests"] == "100" and first.headers["x-ratelimit-remaining-requests"] == "99"
    assert second.headers["x-ratelimit-remaining-requests"] == "98"
    assert first.headers["x-ratelimit-limit-tokens"] == "100000"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert int(second.headers["x-ratelimit-remaining-tokens"]) < 100_000


def test_tpm_settles_streams_to_their_real_usage(gateway: Gateway, team: Team, routing: None, cloud_upstream: FakeOpenAI) -> None:
    issued = issue(team, ["gpt-4o-mini"], tpm=200, max_tokens=50)
    client = gateway.openai(issued.plaintext)
    messages = [{"role": "user", "content": "stream this please"}]
    # What the gateway holds per request: the exact o200k prompt + the 50-token ceiling.
    held = count_chat([{"role": "system", "content": "You write marketing copy."}, *messages], model="gpt-4o-mini").tokens + 50
    used = 4 + 3 + 4  # the fake counts words: bound prompt 4 + user 3 → prompt 7; "echo: stream this please" → 4
    expected = max(n for n in range(1, 50) if used * (n - 1) + held <= 200)
    assert expected > 200 // held  # settlement must matter for this test to prove anything
    fresh_window(issued)
    served = 0
    with pytest.raises(openai.RateLimitError) as caught:
        for _ in range(expected + 1):
            chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: stream this please"
            served += 1
    assert served == expected
    response = caught.value.response
    assert response.headers["x-ratelimit-limit-tokens"] == "200" and int(response.headers["retry-after"]) >= 1
    assert cloud_upstream.received[0].body["max_tokens"] == 50  # clamped to the ceiling


def _pricy_model() -> None:
    # $1000 / $3000 per Mtok: a few requests reach a cents-sized budget.
    Model.objects.create(
        name="gpt-4o-pricy",
        backend=Backend.objects.get(name="openai"),
        upstream_model="gpt-4o-2024-08-06",
        input_price_per_mtok=Decimal("1000"),
        output_price_per_mtok=Decimal("3000"),
    )


def test_a_budget_is_not_overrun_by_concurrent_requests(gateway: Gateway, team: Team, routing: None) -> None:
    _pricy_model()
    # Each request holds its worst case ($0.05) and really costs ~$0.022: 20 of them (~$0.44)
    # cannot all fit in $0.30 however little they overlap, so some must be refused.
    issued = issue(team, ["gpt-4o-pricy"], budget=Decimal("0.30"), max_tokens=10)
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: chat(gateway, issued.plaintext, model="gpt-4o-pricy"), range(20)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 402}, statuses
    rows = AuditEvent.objects.filter(event_type="request", key_id=issued.api_key.pk, decision="allowed")
    costs = [row.cost for row in rows if row.cost is not None]
    spent = sum(costs, Decimal(0))
    assert len(costs) == rows.count() == statuses.count(200) and Decimal(0) < spent <= Decimal("0.30")


def test_an_exhausted_budget_is_a_402_that_reveals_no_figures(gateway: Gateway, team: Team, routing: None) -> None:
    _pricy_model()
    other = Team.objects.create(name="rich", owner_email="o@example.com", budget=Decimal("999.00"))
    issue(other, ["gpt-4o-pricy"])
    issued = issue(team, ["gpt-4o-pricy"], budget=Decimal("0.01"), max_tokens=10)
    response = chat(gateway, issued.plaintext, model="gpt-4o-pricy")
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("insufficient_quota", "budget_exceeded", None)
    assert "renews at" in error["message"]
    for secret in ("0.01", "999", "rich", "$"):
        assert secret not in error["message"]
    with pytest.raises(openai.APIStatusError) as caught:
        gateway.openai(issued.plaintext).chat.completions.create(
            model="gpt-4o-pricy", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 402
    assert AuditEvent.objects.filter(key_id=issued.api_key.pk, decision="blocked_budget", status=402).count() == 2


def test_monitor_mode_lets_breaches_through_and_records_what_would_have_happened(
    gateway: Gateway, team: Team, routing: None
) -> None:
    issued = issue(team, ["mock-small"], rpm=2, enforcement="monitor")
    fresh_window(issued)
    statuses = [chat(gateway, issued.plaintext).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 200]
    rows = AuditEvent.objects.filter(event_type="request", key_id=issued.api_key.pk).order_by("id")
    assert [row.decision for row in rows] == ["allowed", "allowed", "monitor_blocked_limit", "monitor_blocked_limit"]
    would = rows.last()
    assert would is not None and would.status == 200 and would.error_code == "rate_limit_exceeded"
    assert "would have refused with 429" in would.detail["error"]
    # Alerted too, once (cooldown), saying it was monitor mode. The rules run after the answer,
    # on the worker's anomaly thread: wait for the last request's evaluation.
    alerts = Alert.objects.filter(kind="limit_breach", key_id=issued.api_key.pk)
    wait_until(alerts.exists, timeout=10)
    time.sleep(0.5)  # the other worker's evaluation, if it had the other breach, has run too
    [alert] = alerts
    assert alert.detail["monitor"] is True


def test_too_many_messages_is_refused_before_the_backend(
    gateway: Gateway, team: Team, routing: None, cloud_upstream: FakeOpenAI
) -> None:
    issued = issue(team, ["gpt-4o-mini"], max_messages=2)
    response = chat(gateway, issued.plaintext, model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}] * 3)
    assert response.status_code == 400 and response.json()["error"]["code"] == "too_many_messages"
    assert cloud_upstream.received == []
