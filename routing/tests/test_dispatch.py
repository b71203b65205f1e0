"""The dispatcher: retries, deadlines, failover and the classification boundary, over real HTTP.

Backends are fake OpenAI-compatible servers; the dispatcher runs with the production adapters
and HTTP client, so what each fake received is what a real backend would have received.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.utils import timezone
from httpx_aiohttp import HttpxAiohttpClient

from routing.adapters import ADAPTERS, BackendConfig, UpstreamError
from routing.dispatch import FAILURE, RECOVERED, AttemptRecord, Dispatcher, retry_delay
from routing.selectors import Route
from tests.fakes.base import Reply
from tests.fakes.openai import FakeOpenAI

BODY = {"model": "public-name", "messages": [{"role": "user", "content": "hello"}]}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}


@pytest.fixture(scope="module")
def _servers() -> Iterator[list[FakeOpenAI]]:
    servers = [FakeOpenAI() for _ in range(3)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def fakes(_servers: list[FakeOpenAI]) -> list[FakeOpenAI]:
    for server in _servers:
        server.reset()
    return _servers


def route(fake: FakeOpenAI, name: str, *, location: str = "on_prem", fallbacks: tuple[Route, ...] = (), **config: Any) -> Route:
    open_until = config.pop("circuit_open_until", None)
    failures = config.pop("backend_failures", 0)
    backend = BackendConfig(name=name, kind="vllm", base_url=f"{fake.base_url}/v1", location=location, **config)
    return Route(
        model=f"model-{name}",
        upstream_model=f"upstream-{name}",
        backend=backend,
        input_price_per_mtok=Decimal("1"),
        output_price_per_mtok=Decimal("2"),
        fallbacks=fallbacks,
        backend_failures=failures,
        circuit_open_until=open_until,
    )


class Run:
    """One dispatch, with what it reported."""

    def __init__(self, route: Route, *, sensitive: bool = False) -> None:
        self.route = route
        self.sensitive = sensitive
        self.attempts: list[AttemptRecord] = []
        self.served: list[str] = []
        self.chunks: list[dict[str, Any]] = []

    def outcomes(self) -> list[tuple[str, str]]:
        return [(a.route.backend.name, a.outcome) for a in self.attempts]

    def _run(self, call: Any) -> Any:
        async def main() -> Any:
            client = HttpxAiohttpClient(trust_env=False, limits=httpx.Limits(max_connections=8))
            dispatcher = Dispatcher(
                self.route,
                sensitive=self.sensitive,
                on_attempt=self.attempts.append,
                on_serve=lambda served: self.served.append(served.backend.name),
                adapters=lambda backend: ADAPTERS[backend.kind](client=client, backend=backend, default_timeout=10.0),
            )
            try:
                return await call(dispatcher)
            finally:
                await client.aclose()

        return asyncio.run(main())

    def chat(self, body: dict[str, Any] = BODY) -> dict[str, Any]:
        return self._run(lambda dispatcher: dispatcher.chat(body))

    def stream(self, body: dict[str, Any] = STREAM_BODY, *, stop_after: int | None = None) -> list[dict[str, Any]]:
        async def consume(dispatcher: Dispatcher) -> list[dict[str, Any]]:
            chunks = dispatcher.chat_stream(body)
            try:
                async for chunk in chunks:
                    self.chunks.append(chunk)
                    if stop_after is not None and len(self.chunks) >= stop_after:
                        break  # the client went away
            finally:
                await chunks.aclose()
            return self.chunks

        return self._run(consume)


def server_error(status: int = 500, **headers: str) -> Reply:
    return Reply(status=status, body={"error": {"message": "boom", "type": "server_error"}}, headers=headers)


def sse(*frames: dict[str, Any]) -> list[bytes]:
    return [b"data: " + json.dumps(frame).encode() + b"\n\n" for frame in frames]


def text_chunk(text: str) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [
        {"index": 0, "delta": {"content": text}, "finish_reason": None}
    ]}  # fmt: skip


# ── retries ──


def test_it_retries_a_retryable_failure_on_the_same_backend(fakes: list[FakeOpenAI]) -> None:
    primary = fakes[0]
    primary.fail_next(server_error(503))

    run = Run(route(primary, "a"))
    result = run.chat()

    assert result["choices"][0]["message"]["content"] == "echo: hello"
    assert len(primary.received) == 2
    assert run.outcomes() == [("a", "upstream_overloaded"), ("a", "ok")]
    assert [a.health for a in run.attempts] == [FAILURE, RECOVERED]
    assert primary.received[0].body["model"] == "upstream-a"


def test_it_honours_retry_after(fakes: list[FakeOpenAI]) -> None:
    fakes[0].fail_next(Reply(status=429, body={"error": {"message": "slow down"}}, headers={"retry-after": "0.6"}))
    started = time.monotonic()

    Run(route(fakes[0], "a")).chat()

    assert time.monotonic() - started >= 0.6
    assert len(fakes[0].received) == 2


def test_it_fails_over_instead_of_waiting_out_a_long_retry_after(fakes: list[FakeOpenAI]) -> None:
    fakes[0].fail_next(Reply(status=429, body={"error": {"message": "slow down"}}, headers={"retry-after": "120"}))
    started = time.monotonic()

    run = Run(route(fakes[0], "a", fallbacks=(route(fakes[1], "b"),)))
    run.chat()

    assert time.monotonic() - started < 2
    assert run.outcomes() == [("a", "upstream_rate_limited"), ("b", "ok")]


def test_it_never_retries_nor_fails_over_a_request_the_backend_calls_invalid(fakes: list[FakeOpenAI]) -> None:
    fakes[0].fail_next(Reply(status=400, body={"error": {"message": "bad request"}}))

    run = Run(route(fakes[0], "a", fallbacks=(route(fakes[1], "b"),)))
    with pytest.raises(UpstreamError) as caught:
        run.chat()

    assert caught.value.status == 400
    assert len(fakes[0].received) == 1 and fakes[1].received == []
    assert run.attempts[0].health is None  # not the backend's fault: the breaker ignores it


def test_it_stops_retrying_after_max_retries(fakes: list[FakeOpenAI]) -> None:
    fakes[0].fail_next(server_error(), times=5)

    with pytest.raises(UpstreamError) as caught:
        Run(route(fakes[0], "a", max_retries=2)).chat()

    assert caught.value.status == 502
    assert len(fakes[0].received) == 3


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 6])
def test_backoff_grows_exponentially_with_jitter_and_a_ceiling(attempt: int) -> None:
    exc = UpstreamError("x", status=502, retryable=True)
    delays = {retry_delay(attempt, exc) for _ in range(50)}

    ceiling = min(2.0, 0.25 * 2**attempt)
    assert all(d is not None and ceiling / 2 <= d <= ceiling for d in delays)
    assert len(delays) > 1  # jittered


def test_a_timeout_is_not_retried_on_the_same_backend(fakes: list[FakeOpenAI]) -> None:
    fakes[0].fail_next(Reply(body={}, delay=1.5))

    run = Run(route(fakes[0], "a", timeout=0.3, fallbacks=(route(fakes[1], "b"),)))
    run.chat()

    assert run.outcomes() == [("a", "upstream_timeout"), ("b", "ok")]
    assert len(fakes[0].received) == 1


# ── failover ──


def test_it_fails_over_along_the_chain_in_order(fakes: list[FakeOpenAI]) -> None:
    fakes[0].fail_next(server_error(), times=2)
    fakes[1].fail_next(server_error(), times=2)
    chain = route(fakes[0], "a", fallbacks=(route(fakes[1], "b"), route(fakes[2], "c")))

    run = Run(chain)
    run.chat()

    failed = "upstream_error"
    assert run.outcomes() == [("a", failed), ("a", failed), ("b", failed), ("b", failed), ("c", "ok")]
    assert run.served == ["c"]
    assert fakes[2].received[0].body["model"] == "upstream-c"  # each link's own upstream name


def test_it_raises_the_last_failure_when_the_chain_is_exhausted(fakes: list[FakeOpenAI]) -> None:
    fakes[0].fail_next(server_error(), times=2)
    fakes[1].fail_next(server_error(503), times=2)

    with pytest.raises(UpstreamError) as caught:
        Run(route(fakes[0], "a", fallbacks=(route(fakes[1], "b"),))).chat()

    assert caught.value.status == 503


def test_it_fails_over_embeddings_too(fakes: list[FakeOpenAI]) -> None:
    fakes[0].fail_next(server_error(), times=2)

    run = Run(route(fakes[0], "a", fallbacks=(route(fakes[1], "b"),)))
    result = run._run(lambda dispatcher: dispatcher.embeddings({"model": "x", "input": ["one"]}))

    assert result["object"] == "list"
    assert run.served == ["b"]


# ── the classification boundary: an invariant ──

LINKS = ("on_prem_up", "on_prem_down", "cloud")


def _chain(fakes: list[FakeOpenAI], kinds: tuple[str, ...]) -> Route:
    """A primary on-prem backend that is down, then `kinds`; every cloud link is the cloud fake."""
    onprem_up, onprem_down, cloud = fakes
    links = []
    for position, kind in enumerate(kinds):
        fake = {"on_prem_up": onprem_up, "on_prem_down": onprem_down, "cloud": cloud}[kind]
        location = "cloud" if kind == "cloud" else "on_prem"
        links.append(route(fake, f"{kind}-{position}", location=location, max_retries=0))
    return route(onprem_down, "primary", max_retries=0, fallbacks=tuple(links))


@pytest.mark.parametrize("kinds", [k for n in range(1, 4) for k in itertools.product(LINKS, repeat=n)], ids="-".join)
def test_a_sensitive_request_never_reaches_a_cloud_backend(fakes: list[FakeOpenAI], kinds: tuple[str, ...]) -> None:
    fakes[1].fail_next(server_error(503), times=10)
    run = Run(_chain(fakes, kinds), sensitive=True)

    try:
        run.chat()
        served = True
    except UpstreamError as exc:
        served = False
        assert exc.status in (502, 503)

    assert fakes[2].received == []  # the cloud saw nothing, whatever the chain and failures
    assert served == ("on_prem_up" in kinds)
    assert all(a.route.backend.is_on_prem for a in run.attempts if not a.skipped)
    reached = kinds[: kinds.index("on_prem_up") + 1] if served else kinds
    cloud_outcomes = [a.outcome for a in run.attempts if not a.route.backend.is_on_prem]
    assert cloud_outcomes == ["skipped_classification"] * reached.count("cloud")


def test_a_sensitive_stream_never_reaches_a_cloud_backend(fakes: list[FakeOpenAI]) -> None:
    fakes[1].fail_next(server_error(503), times=10)

    with pytest.raises(UpstreamError):
        Run(_chain(fakes, ("cloud",)), sensitive=True).stream()

    assert fakes[2].received == []


def test_a_non_sensitive_request_may_fail_over_to_the_cloud(fakes: list[FakeOpenAI]) -> None:
    fakes[1].fail_next(server_error(503), times=10)

    run = Run(_chain(fakes, ("cloud",)), sensitive=False)
    run.chat()

    assert len(fakes[2].received) == 1
    assert run.served == ["cloud-0"]


# ── streams ──


def test_a_stream_fails_over_before_its_first_chunk(fakes: list[FakeOpenAI]) -> None:
    fakes[0].fail_next(server_error(503), times=2)

    run = Run(route(fakes[0], "a", fallbacks=(route(fakes[1], "b"),)))
    chunks = run.stream()

    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "echo: hello"
    assert chunks[-1]["usage"] is not None
    assert run.outcomes() == [("a", "upstream_overloaded"), ("a", "upstream_overloaded"), ("b", "ok")]
    assert run.served == ["b"]


def test_a_stream_is_never_retried_once_a_chunk_went_out(fakes: list[FakeOpenAI]) -> None:
    fakes[0].fail_next(Reply(chunks=sse(text_chunk("one "), text_chunk("two "), text_chunk("three")), drop_after=1))

    run = Run(route(fakes[0], "a", fallbacks=(route(fakes[1], "b"),)))
    with pytest.raises(UpstreamError):
        run.stream()

    assert [c["choices"][0]["delta"]["content"] for c in run.chunks] == ["one "]
    assert len(fakes[0].received) == 1 and fakes[1].received == []
    assert run.outcomes()[-1][0] == "a" and run.outcomes()[-1][1] != "ok"
    assert run.attempts[-1].health == FAILURE


def test_a_stream_whose_first_chunk_is_late_fails_over(fakes: list[FakeOpenAI]) -> None:
    fakes[0].fail_next(Reply(chunks=sse(text_chunk("late")), delay=1.5))

    run = Run(route(fakes[0], "a", first_byte_timeout=0.3, fallbacks=(route(fakes[1], "b"),)))
    started = time.monotonic()
    run.stream()

    assert time.monotonic() - started < 1.4
    assert run.outcomes() == [("a", "upstream_timeout"), ("b", "ok")]


def test_a_stream_that_outlives_its_total_deadline_is_cut(fakes: list[FakeOpenAI]) -> None:
    fakes[0].fail_next(Reply(chunks=sse(*(text_chunk(f"{n} ") for n in range(10))), chunk_delay=0.2))

    run = Run(route(fakes[0], "a", timeout=0.5))
    with pytest.raises(UpstreamError) as caught:
        run.stream()

    assert caught.value.status == 504
    assert 0 < len(run.chunks) < 10


def test_a_client_that_goes_away_is_recorded_and_releases_the_backend(fakes: list[FakeOpenAI]) -> None:
    run = Run(route(fakes[0], "a"))
    run.stream(stop_after=1)

    assert run.outcomes() == [("a", "client_disconnected")]
    assert run.attempts[0].health is None


# ── circuit breaker (the state as read with the route) ──


def test_it_records_no_skip_for_links_a_successful_request_never_reached(fakes: list[FakeOpenAI]) -> None:
    run = Run(route(fakes[0], "a", fallbacks=(route(fakes[2], "cloud", location="cloud"),)), sensitive=True)
    run.chat()

    assert run.outcomes() == [("a", "ok")]


def test_it_skips_a_backend_whose_circuit_is_open(fakes: list[FakeOpenAI]) -> None:
    open_until = timezone.now() + timedelta(seconds=30)

    run = Run(route(fakes[0], "a", circuit_open_until=open_until, fallbacks=(route(fakes[1], "b"),)))
    run.chat()

    assert fakes[0].received == []
    assert run.outcomes() == [("a", "skipped_circuit_open"), ("b", "ok")]


def test_it_tries_a_backend_again_once_the_cool_down_is_over(fakes: list[FakeOpenAI]) -> None:
    run = Run(route(fakes[0], "a", backend_failures=7, circuit_open_until=timezone.now() - timedelta(seconds=1)))
    run.chat()

    assert len(fakes[0].received) == 1
    assert run.attempts[0].health == RECOVERED


def test_it_answers_503_with_retry_after_when_every_circuit_is_open(fakes: list[FakeOpenAI]) -> None:
    soon = timezone.now() + timedelta(seconds=12)

    with pytest.raises(UpstreamError) as caught:
        Run(route(fakes[0], "a", circuit_open_until=soon)).chat()

    assert (caught.value.status, caught.value.code) == (503, "no_backend_available")
    assert caught.value.retry_after is not None and 10 <= caught.value.retry_after <= 12
    assert fakes[0].received == []
