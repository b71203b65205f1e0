"""W3C trace context on upstream calls: what the fake providers received."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from httpx_aiohttp import HttpxAiohttpClient

from routing.adapters import ADAPTERS, BackendConfig
from routing.dispatch import Dispatcher
from routing.selectors import Route
from routing.trace import current_traceparent, parse_traceparent
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.base import FakeProvider, Reply
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
CHILD = re.compile(rf"00-{TRACE_ID}-([0-9a-f]{{16}})-01")
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}


@pytest.fixture(scope="module")
def providers() -> Iterator[dict[str, FakeProvider]]:
    fakes: dict[str, FakeProvider] = {
        "vllm": FakeOpenAI(), "anthropic": FakeAnthropic(api_key="sk-ant-trace-test-0001"),
        "gemini": FakeGemini(api_key="AIza-trace-test-0001"),
    }  # fmt: skip
    for fake in fakes.values():
        fake.start()
    yield fakes
    for fake in fakes.values():
        fake.stop()


@pytest.fixture
def fake_for(providers: dict[str, FakeProvider], monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeProvider]:
    monkeypatch.setenv("TRACE_ANTHROPIC_KEY", "sk-ant-trace-test-0001")
    monkeypatch.setenv("TRACE_GEMINI_KEY", "AIza-trace-test-0001")
    for fake in providers.values():
        fake.reset()
    return providers


def config(kind: str, fake: FakeProvider, **extra: Any) -> BackendConfig:
    base_url = {"vllm": f"{fake.base_url}/v1", "anthropic": fake.base_url, "gemini": f"{fake.base_url}/v1beta"}[kind]
    key_env = {"anthropic": "TRACE_ANTHROPIC_KEY", "gemini": "TRACE_GEMINI_KEY"}.get(kind, "")
    return BackendConfig(name=kind, kind=kind, base_url=base_url, location="on_prem", api_key_env=key_env, **extra)


def dispatched(backend: BackendConfig, *, traceparent: str | None, stream: bool = False) -> Any:
    """One dispatch with the production client, inside a request whose context holds `traceparent`."""

    async def main() -> Any:
        current_traceparent.set(traceparent)
        client = HttpxAiohttpClient(trust_env=False, limits=httpx.Limits(max_connections=8))
        route = Route(
            model="m", upstream_model="m", backend=backend,
            input_price_per_mtok=Decimal("0"), output_price_per_mtok=Decimal("0"),
        )  # fmt: skip
        dispatcher = Dispatcher(
            route,
            sensitive=False,
            on_attempt=lambda attempt: None,
            adapters=lambda b: ADAPTERS[b.kind](client=client, backend=b, default_timeout=10.0),
        )
        try:
            if stream:
                return [chunk async for chunk in dispatcher.chat_stream(STREAM_BODY)]
            return await dispatcher.chat(BODY)
        finally:
            await client.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize("kind", ["vllm", "anthropic", "gemini"])
def test_every_upstream_call_continues_the_requests_trace(fake_for: dict[str, FakeProvider], kind: str, stream: bool) -> None:
    dispatched(config(kind, fake_for[kind]), traceparent=PARENT, stream=stream)

    [received] = fake_for[kind].received
    match = CHILD.fullmatch(received.headers["traceparent"])
    assert match is not None  # same trace, same flags, version 00
    assert match.group(1) not in ("00f067aa0ba902b7", "0" * 16)  # a span of its own, not the request's


def test_each_attempt_is_a_span_of_its_own(fake_for: dict[str, FakeProvider]) -> None:
    fake = fake_for["vllm"]
    fake.fail_next(Reply(status=503, body={"error": {"message": "busy"}}))

    dispatched(config("vllm", fake, max_retries=1), traceparent=PARENT)

    spans = [CHILD.fullmatch(r.headers["traceparent"]) for r in fake.received]
    assert len(spans) == 2 and all(spans)
    ids = [span.group(1) for span in spans if span is not None]
    assert ids[0] != ids[1]


@pytest.mark.parametrize(
    "traceparent",
    [None, "", "not-a-traceparent", f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01", f"00-{'0' * 32}-00f067aa0ba902b7-01"],
)
def test_no_traceparent_goes_upstream_without_a_valid_one(fake_for: dict[str, FakeProvider], traceparent: str | None) -> None:
    dispatched(config("vllm", fake_for["vllm"]), traceparent=traceparent)

    assert "traceparent" not in fake_for["vllm"].received[0].headers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (PARENT, (TRACE_ID, "01")),
        (f"00-{TRACE_ID}-00f067aa0ba902b7-00", (TRACE_ID, "00")),
        (f"01-{TRACE_ID}-00f067aa0ba902b7-01-later-field", (TRACE_ID, "01")),  # a later version may add fields
        (f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra", None),  # version 00 has exactly four
        (f"ff-{TRACE_ID}-00f067aa0ba902b7-01", None),
        (f"00-{TRACE_ID}-{'0' * 16}-01", None),
        (f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01", None),
        (f"00-{TRACE_ID}-00F067AA0BA902B7-01", None),
    ],
)
def test_it_validates_traceparent(value: str, expected: tuple[str, str] | None) -> None:
    assert parse_traceparent(value) == expected
