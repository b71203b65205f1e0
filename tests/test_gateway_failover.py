"""Failover end to end: the official OpenAI SDK → the real server → fake backends.

The chain under test: `llama-3-8b` on the on-prem vLLM fake, then a second on-prem fake, and/or
the cloud OpenAI fake. A sensitive key's request must never reach the cloud, whatever fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from audit.models import AuditEvent
from conftest import Gateway
from routing.models import BackendHealth
from routing.services import routing_import
from teams.services import IssuedKey
from tests.fakes.base import Reply
from tests.fakes.openai import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

ASK = [{"role": "user", "content": "Summarise claim 42"}]


@pytest.fixture(scope="module")
def _second_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def second_onprem(_second_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    _second_server.reset()
    yield _second_server
    _second_server.reset()


def chain(*fallbacks: str, second: FakeOpenAI | None = None) -> None:
    """Give llama-3-8b the fallback chain `fallbacks` (on top of the `routing` fixture)."""
    backends = []
    models: list[dict[str, Any]] = []
    if second is not None:
        backends.append({"name": "local-vllm-b", "kind": "vllm", "base_url": f"{second.base_url}/v1", "location": "on_prem"})
        models.append({"name": "llama-3-8b-b", "backend": "local-vllm-b", "upstream_model": "llama3:8b"})
    models.append(
        {
            "name": "llama-3-8b",
            "backend": "local-vllm",
            "upstream_model": "meta-llama/Meta-Llama-3-8B-Instruct",
            "fallbacks": list(fallbacks),
        }
    )
    routing_import(document={"backends": backends, "models": models})


def server_error(status: int = 500) -> Reply:
    return Reply(status=status, body={"error": {"message": "GPU fell over", "type": "server_error"}})


def last_request() -> AuditEvent:
    return AuditEvent.objects.filter(event_type="request").latest("id")


def attempts() -> list[tuple[str, str, int | None]]:
    row = last_request()
    assert all(isinstance(a["latency_ms"], float | int) for a in row.attempts)
    return [(a["backend"], a["outcome"], a["status"]) for a in row.attempts]


def test_a_failing_on_prem_backend_fails_over_to_the_second_on_prem_backend(
    gateway: Gateway,
    sensitive_key: IssuedKey,
    onprem_upstream: FakeOpenAI,
    second_onprem: FakeOpenAI,
    cloud_upstream: FakeOpenAI,
) -> None:
    chain("llama-3-8b-b", "gpt-4o-mini", second=second_onprem)
    onprem_upstream.fail_next(server_error(), times=2)

    completion = gateway.openai(sensitive_key.plaintext).chat.completions.create(model="llama-3-8b", messages=ASK)

    assert completion.choices[0].message.content == "echo: Summarise claim 42"
    assert completion.model == "llama-3-8b"
    assert len(onprem_upstream.received) == 2  # the first try and one retry
    assert second_onprem.received[0].body["model"] == "llama3:8b"
    assert cloud_upstream.received == []
    row = last_request()
    assert (row.decision, row.status, row.backend) == ("allowed", 200, "local-vllm-b")
    assert attempts() == [
        ("local-vllm", "upstream_error", 500),
        ("local-vllm", "upstream_error", 500),
        ("local-vllm-b", "ok", 200),
    ]


def test_a_sensitive_request_with_only_a_cloud_fallback_left_is_refused_and_the_cloud_sees_nothing(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI, cloud_upstream: FakeOpenAI
) -> None:
    chain("gpt-4o-mini")
    onprem_upstream.fail_next(server_error(503), times=2)

    with pytest.raises(openai.InternalServerError) as caught:
        gateway.openai(sensitive_key.plaintext).chat.completions.create(model="llama-3-8b", messages=ASK)

    assert caught.value.status_code in (502, 503)
    assert cloud_upstream.received == []
    assert attempts() == [
        ("local-vllm", "upstream_overloaded", 503),
        ("local-vllm", "upstream_overloaded", 503),
        ("openai", "skipped_classification", None),
    ]
    assert last_request().decision == "upstream_error"


def test_a_sensitive_stream_with_only_a_cloud_fallback_left_is_refused_too(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI, cloud_upstream: FakeOpenAI
) -> None:
    chain("gpt-4o-mini")
    onprem_upstream.fail_next(server_error(503), times=2)

    with pytest.raises(openai.InternalServerError):
        list(gateway.openai(sensitive_key.plaintext).chat.completions.create(model="llama-3-8b", messages=ASK, stream=True))

    assert cloud_upstream.received == []


def test_a_non_sensitive_request_may_fail_over_to_the_cloud(
    gateway: Gateway, cloud_key: IssuedKey, onprem_upstream: FakeOpenAI, cloud_upstream: FakeOpenAI
) -> None:
    chain("gpt-4o-mini")
    onprem_upstream.fail_next(server_error(), times=2)

    completion = gateway.openai(cloud_key.plaintext).chat.completions.create(model="llama-3-8b", messages=ASK)

    assert completion.choices[0].message.content == "echo: Summarise claim 42"
    assert cloud_upstream.received[0].body["model"] == "gpt-4o-mini-2024-07-18"
    row = last_request()
    # Priced as what served it: the cloud model's prices, not the on-prem model's zero.
    assert row.backend == "openai" and row.cost is not None and row.cost > 0


def test_a_stream_fails_over_before_its_first_byte(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI, second_onprem: FakeOpenAI
) -> None:
    chain("llama-3-8b-b", second=second_onprem)
    onprem_upstream.fail_next(server_error(503), times=2)

    stream = gateway.openai(sensitive_key.plaintext).chat.completions.create(
        model="llama-3-8b", messages=ASK, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: Summarise claim 42"
    assert chunks[-1].usage is not None
    assert len(second_onprem.received) == 1
    assert attempts()[-1] == ("local-vllm-b", "ok", 200)


def test_a_stream_that_breaks_after_its_first_byte_is_not_retried(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI, second_onprem: FakeOpenAI
) -> None:
    chain("llama-3-8b-b", second=second_onprem)
    frame = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "partial "}, "finish_reason": None}]}  # fmt: skip
    frames = [b"data: " + json.dumps(frame).encode() + b"\n\n"] * 3
    onprem_upstream.fail_next(Reply(chunks=frames, drop_after=1))

    stream = gateway.openai(sensitive_key.plaintext).chat.completions.create(model="llama-3-8b", messages=ASK, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == "partial "
    assert len(onprem_upstream.received) == 1 and second_onprem.received == []
    backend, outcome, _ = attempts()[-1]
    assert backend == "local-vllm" and outcome != "ok"


def test_a_backend_that_keeps_failing_is_taken_out_and_skipped(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI, second_onprem: FakeOpenAI
) -> None:
    chain("llama-3-8b-b", second=second_onprem)
    onprem_upstream.fail_next(server_error(), times=6)
    client = gateway.openai(sensitive_key.plaintext)

    for _ in range(3):  # two failed tries each: the fifth failure opens the circuit (default)
        client.chat.completions.create(model="llama-3-8b", messages=ASK)
    health = BackendHealth.objects.get(backend__name="local-vllm")
    assert health.consecutive_failures == 6 and health.open_until is not None

    completion = client.chat.completions.create(model="llama-3-8b", messages=ASK)

    assert completion.choices[0].message.content == "echo: Summarise claim 42"
    assert len(onprem_upstream.received) == 6  # not tried while its circuit is open
    assert attempts() == [("local-vllm", "skipped_circuit_open", None), ("local-vllm-b", "ok", 200)]
