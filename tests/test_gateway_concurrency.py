"""A key's ceiling on requests in flight, end to end: the real server (gunicorn, 2 workers).

The upstream is gated (it answers only once the test opens the gate), so "in flight" is a
state the test holds, not a race it hopes to win: exactness is checked by counting what
reached the upstream while every admitted request is still waiting there.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from audit.models import AuditEvent
from conftest import Gateway, database_url_for_tests, start_gateway, stop_gateway
from teams.models import Team
from teams.services import IssuedKey, api_key_issue
from tests.fakes.base import Received, Reply
from tests.fakes.openai import FakeOpenAI
from tests.test_gateway_limits import redis_gateway  # noqa: F401  # a fixture, used by name
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

# The Redis-backed gateway (module-scoped: one per module) is test_gateway_limits'.


class Gate:
    """Holds every upstream request until `open()`; counts how many wait at once."""

    def __init__(self, upstream: FakeOpenAI) -> None:
        self.upstream = upstream
        self.opened = threading.Event()
        self.waiting = 0
        self.most = 0
        self._lock = threading.Lock()
        self._respond = upstream.respond

    def respond(self, received: Received) -> Reply:
        with self._lock:
            self.waiting += 1
            self.most = max(self.most, self.waiting)
        try:
            self.opened.wait(timeout=60)
            return self._respond(received)
        finally:
            with self._lock:
                self.waiting -= 1

    def open(self) -> None:
        self.opened.set()


@pytest.fixture
def gate(cloud_upstream: FakeOpenAI) -> Iterator[Gate]:
    gate = Gate(cloud_upstream)
    cloud_upstream.respond = gate.respond  # type: ignore[method-assign]
    yield gate
    gate.open()
    del cloud_upstream.respond


def issue(team: Team, **limits: Any) -> IssuedKey:
    return api_key_issue(
        team=team,
        name=f"concurrent {uuid.uuid4().hex[:6]}",
        system_prompt="You write marketing copy.",
        models=["gpt-4o-mini"],
        classification="non_sensitive",
        **limits,
    )


def chat(gateway: Gateway, key: str, **body: Any) -> httpx.Response:
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}], **body}
    # A new connection per request, so the two workers share the load.
    return httpx.post(f"{gateway.v1}/chat/completions", json=payload, headers={"authorization": f"Bearer {key}"}, timeout=60)


def _rows(issued: IssuedKey) -> Any:
    return AuditEvent.objects.filter(event_type="request", key_id=issued.api_key.pk)


@pytest.mark.parametrize("store", ["database", "redis"])
def test_in_flight_requests_are_capped_exactly_across_workers(
    store: str, request: pytest.FixtureRequest, team: Team, routing: None, gate: Gate
) -> None:
    gateway: Gateway = request.getfixturevalue("gateway" if store == "database" else "redis_gateway")
    issued = issue(team, max_concurrent=3)
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures: list[Future[httpx.Response]] = [pool.submit(chat, gateway, issued.plaintext) for _ in range(16)]
        # Every request but the admitted ones is refused while those wait at the gate.
        refused = wait_until(lambda: [f for f in futures if f.done()] if sum(f.done() for f in futures) >= 13 else None)
        assert refused is not None and len(refused) == 13 and gate.waiting == 3
        gate.open()
        responses = [f.result() for f in futures]
    statuses = sorted(r.status_code for r in responses)
    others = [(r.status_code, r.text[:300]) for r in responses if r.status_code not in (200, 429)]
    assert statuses.count(200) == 3 and statuses.count(429) == 13 and gate.most == 3, others
    over = next(r for r in responses if r.status_code == 429)
    error = over.json()["error"]
    assert error["code"] == "concurrency_limit_exceeded" and error["type"] == "requests" and over.headers["retry-after"] == "1"
    assert over.headers["x-ratelimit-limit-concurrent"] == "3" and over.headers["x-ratelimit-remaining-concurrent"] == "0"
    rows = _rows(issued)
    assert rows.filter(decision="allowed").count() == 3
    assert rows.filter(decision="blocked_limit", status=429, error_code="concurrency_limit_exceeded").count() == 13
    # All three slots came back: three more run at once again.
    assert [chat(gateway, issued.plaintext).status_code for _ in range(3)] == [200, 200, 200]


def test_the_slot_comes_back_however_the_request_ends(
    gateway: Gateway, team: Team, routing: None, cloud_upstream: FakeOpenAI
) -> None:
    issued = issue(team, max_concurrent=1, tpm=2000, max_tokens=50)
    key = issued.plaintext
    # An answer, a stream, an upstream failure, a refusal by another limit (after the slot was
    # taken): each ends, then the next request finds the one slot free.
    assert chat(gateway, key).status_code == 200
    with httpx.stream(
        "POST",
        f"{gateway.v1}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    ) as streamed:
        assert streamed.status_code == 200 and b"[DONE]" in b"".join(streamed.iter_bytes())
    cloud_upstream.fail_next(Reply(status=400, body={"error": {"message": "bad", "type": "invalid_request_error"}}))
    assert chat(gateway, key).status_code == 400
    too_big = chat(gateway, key, messages=[{"role": "user", "content": "word " * 3000}])
    assert too_big.status_code == 429 and too_big.json()["error"]["code"] == "rate_limit_exceeded"
    assert chat(gateway, key).status_code == 200
    decisions = list(_rows(issued).order_by("id").values_list("decision", "status"))
    assert decisions == [("allowed", 200), ("allowed", 200), ("upstream_error", 400), ("blocked_limit", 429), ("allowed", 200)]


def test_a_client_that_goes_away_gives_its_slot_back(gateway: Gateway, team: Team, routing: None, gate: Gate) -> None:
    issued = issue(team, max_concurrent=1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The client gives up while its request waits at the upstream.
        gone = pool.submit(
            lambda: httpx.post(
                f"{gateway.v1}/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True},
                headers={"authorization": f"Bearer {issued.plaintext}"},
                timeout=httpx.Timeout(60, read=1.5),
            )
        )
        with pytest.raises(httpx.ReadTimeout):
            gone.result()
    assert wait_until(lambda: _rows(issued).filter(decision="client_disconnected").exists())
    gate.open()
    assert chat(gateway, issued.plaintext).status_code == 200


def _answered(gateway: Gateway, key: str) -> bool:
    try:
        return chat(gateway, key).status_code == 200
    except httpx.TransportError:
        return False  # the new worker is not listening yet


def _workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def test_a_worker_killed_mid_request_leaks_its_slot_for_one_lease_only(
    django_db_blocker: Any, team: Team, routing: None, gate: Gate
) -> None:
    with django_db_blocker.unblock():
        url = database_url_for_tests()
    server = start_gateway(database_url=url, workers=1, extra_env={"SYNAPSE_CONCURRENCY_LEASE_SECONDS": "3"})
    try:
        issued = issue(team, max_concurrent=1)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(chat, server, issued.plaintext)
            assert wait_until(lambda: gate.waiting == 1)
            assert chat(server, issued.plaintext).status_code == 429  # the slot is taken
            (worker,) = _workers(server.process.pid)
            os.kill(worker, signal.SIGKILL)  # no settlement, no release, no refresh any more
            with pytest.raises(httpx.HTTPError):
                pending.result()
        gate.open()
        # gunicorn starts a new worker; the dead one's slot frees itself when its lease ends.
        assert wait_until(lambda: _answered(server, issued.plaintext), timeout=30, interval=0.5)
    finally:
        stop_gateway(server)
