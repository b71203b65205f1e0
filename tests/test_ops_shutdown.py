"""SIGTERM: the gateway stops accepting, finishes what fits in the grace, and cuts the rest —
with an SSE error event and an audit row, never silently."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from audit.models import AuditEvent
from audit.selectors import audit_streams_unclosed
from conftest import Gateway, database_url_for_tests, start_gateway
from routing.services import routing_import
from teams.models import Classification, Team
from teams.services import IssuedKey, api_key_issue
from tests.fakes.base import Received, Reply
from tests.fakes.openai import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

GRACE = 6  # seconds; workers cut what is left at 3 s (synapse.shutdown.cut_after)


class SlowOpenAI(FakeOpenAI):
    """Streams one word every `chunk_delay` seconds; takes 30 s over a non-streamed "wait"."""

    chunk_delay = 0.25

    def respond(self, received: Received) -> Reply:
        reply = super().respond(received)
        reply.chunk_delay = self.chunk_delay
        if "wait" in json.dumps(received.body) and not (received.body or {}).get("stream"):
            reply.delay = 30
        return reply


@pytest.fixture
def slow_upstream() -> Iterator[SlowOpenAI]:
    fake = SlowOpenAI()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def key(team: Team, routing: None, slow_upstream: SlowOpenAI) -> IssuedKey:
    routing_import(
        document={
            "backends": [
                {"name": "slow-vllm", "kind": "vllm", "base_url": f"{slow_upstream.base_url}/v1", "location": "on_prem"}
            ],
            "models": [{"name": "slow-model", "backend": "slow-vllm", "upstream_model": "slow"}],
        }
    )
    return api_key_issue(
        team=team, name="streams", system_prompt="Be slow.", models=["slow-model"], classification=Classification.SENSITIVE
    )


def stream(gateway: Gateway, key: str, words: int, out: dict[str, Any]) -> None:
    text = " ".join(f"w{i}" for i in range(words))
    body = {"model": "slow-model", "stream": True, "messages": [{"role": "user", "content": text}]}
    events: list[Any] = []
    out["events"] = events
    with httpx.stream(
        "POST", f"{gateway.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    ) as response:
        out["status"] = response.status_code
        out["request_id"] = response.headers.get("x-request-id")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:] if line == "data: [DONE]" else json.loads(line[6:]))


def messages_stream(gateway: Gateway, key: str, words: int, out: dict[str, Any]) -> None:
    """The same long stream through the Anthropic door: its cut must end in Anthropic's shape."""
    text = " ".join(f"w{i}" for i in range(words))
    body = {"model": "slow-model", "stream": True, "max_tokens": 1000, "messages": [{"role": "user", "content": text}]}
    events: list[tuple[str, Any]] = []
    out["events"] = events
    with httpx.stream("POST", f"{gateway.v1}/messages", json=body, headers={"x-api-key": key}, timeout=30) as response:
        out["status"] = response.status_code
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))


def waiting(gateway: Gateway, key: str, out: dict[str, Any]) -> None:
    body = {"model": "slow-model", "messages": [{"role": "user", "content": "wait for it"}]}
    response = httpx.post(f"{gateway.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)
    out.update(status=response.status_code, body=response.json(), headers=response.headers)


def closing_row(request_id: str) -> AuditEvent:
    """A stream's row closing it, after the row that opened it before its first byte."""
    opened, closing = AuditEvent.objects.filter(request_id=request_id).order_by("seq")
    assert (opened.event_type, closing.event_type) == ("stream_opened", "request")
    return closing


def test_sigterm_finishes_short_streams_and_cuts_long_ones_with_an_error_event_and_a_row(
    django_db_blocker: Any, key: IssuedKey
) -> None:
    with django_db_blocker.unblock():
        url = database_url_for_tests()
    # One worker: both streams are in flight on the worker being stopped.
    gateway = start_gateway(database_url=url, workers=1, graceful_timeout=GRACE)
    short: dict[str, Any] = {}
    long: dict[str, Any] = {}
    answer: dict[str, Any] = {}
    anthropic_long: dict[str, Any] = {}
    threads = [
        threading.Thread(target=messages_stream, args=(gateway, key.plaintext, 200, anthropic_long)),
        threading.Thread(target=waiting, args=(gateway, key.plaintext, answer)),  # no answer before the cut
        threading.Thread(target=stream, args=(gateway, key.plaintext, 6, short)),  # ~2 s: fits in the grace
        threading.Thread(target=stream, args=(gateway, key.plaintext, 200, long)),  # ~50 s: cut
    ]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while min(len(long.get("events", [])), len(anthropic_long.get("events", []))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(long["events"]) >= 3 and len(anthropic_long["events"]) >= 3, "the long streams did not start"
        gateway.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # No longer accepting.
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{gateway.base_url}/healthz", timeout=2)
        for thread in threads:
            thread.join(timeout=GRACE + 10)
        assert gateway.process.wait(timeout=GRACE + 10) == 0
    finally:
        if gateway.process.poll() is None:
            gateway.process.kill()

    assert short["status"] == 200 and short["events"][-1] == "[DONE]"
    short_row = closing_row(short["request_id"])
    assert (short_row.decision, short_row.status) == ("allowed", 200)

    assert long["status"] == 200 and "[DONE]" not in long["events"]
    error = long["events"][-1]["error"]
    assert error["code"] == "server_shutdown" and "shutting down" in error["message"]
    long_row = closing_row(long["request_id"])
    assert (long_row.decision, long_row.status, long_row.error_code, long_row.stream) == (
        "cut_at_shutdown",
        503,
        "server_shutdown",
        True,
    )
    assert long_row.response_hmac  # what had been sent is hashed in the row

    kind, last = anthropic_long["events"][-1]
    assert kind == "error" and last["type"] == "error" and last["error"]["type"] == "overloaded_error"
    assert "server_shutdown" in last["error"]["message"]
    assert "message_stop" not in [k for k, _ in anthropic_long["events"]]

    # A request whose answer had not begun: a 503 the SDKs retry, and its row.
    assert answer["status"] == 503 and answer["body"]["error"]["code"] == "server_shutdown"
    assert answer["headers"]["retry-after"] == "1"
    (waited,) = AuditEvent.objects.filter(event_type="request", stream=False)
    assert (waited.decision, waited.status, waited.error_code) == ("cut_at_shutdown", 503, "server_shutdown")
    # Every stream the worker opened, it closed before exiting (the Messages one included).
    assert audit_streams_unclosed() == []
    assert AuditEvent.objects.filter(event_type="stream_opened").count() == 3
