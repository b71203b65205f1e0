"""Reliable upstream calls: retries and failover along a model's fallback chain.

`dispatch(route, ...)` returns an object with the adapter interface (`chat`, `chat_stream`,
`embeddings`); the pipeline calls it instead of an adapter. For each candidate — the route's
own backend, then its fallbacks in order — it:

- skips a backend the request may not reach (`routing.boundary`, checked here before every
  upstream call, so no fallback can cross the classification boundary) or whose circuit is open;
- retries a retryable failure (connection error, 429 honouring Retry-After, 5xx) with
  exponential backoff and jitter, up to the backend's `max_retries`, but not a timeout (the
  next backend is a better bet than waiting the same deadline again). The deadlines
  themselves are the adapters' HTTP layer's (`routing/adapters/http.py`), the one place
  that enforces them;
- fails over to the next candidate on any failure that is the backend's, not the request's;
- for streams, does all of this only until the first chunk exists: once a chunk has gone to
  the client the answer is committed to that backend, and a later failure is final.

Every try and every skip is reported through `on_attempt`, for the audit row and the
circuit breaker.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from .adapters import Adapter, BackendConfig, UpstreamError, adapter_for
from .boundary import may_reach
from .selectors import Route

BASE_DELAY = 0.25  # seconds before the first retry (then doubled per retry, with jitter)
MAX_DELAY = 2.0
# A Retry-After longer than this is better spent on the next backend than waiting.
MAX_RETRY_AFTER = 5.0

FAILURE = "failure"
RECOVERED = "recovered"


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    route: Route
    outcome: str  # "ok", "client_disconnected", "skipped_classification", "skipped_circuit_open", or an error code
    latency_ms: float
    status: int | None = None
    health: str | None = None  # FAILURE / RECOVERED: what the circuit breaker should learn from this try

    @property
    def skipped(self) -> bool:
        return self.outcome.startswith("skipped_")


def backend_at_fault(exc: UpstreamError) -> bool:
    """A failure another backend might not have. A 400 is the request's own: every backend would
    refuse it, and a content-policy refusal must not be routed around."""
    return exc.status != 400


def retry_delay(attempt: int, exc: UpstreamError) -> float | None:
    """Seconds to wait before trying the same backend again, or None to move on."""
    if not exc.retryable or exc.status == 504:
        return None
    if exc.retry_after is not None:
        return exc.retry_after if exc.retry_after <= MAX_RETRY_AFTER else None
    ceiling = min(MAX_DELAY, BASE_DELAY * 2**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # "equal jitter": spread, never zero


def no_backend(route: Route, reopens_in: float | None) -> UpstreamError:
    return UpstreamError(
        f"No backend can serve '{route.model}' right now: its backends are cooling down after repeated failures.",
        status=503,
        code="no_backend_available",
        retry_after=max(1.0, round(reopens_in)) if reopens_in is not None else None,
    )


class Dispatcher:
    def __init__(
        self,
        route: Route,
        *,
        sensitive: bool,
        on_attempt: Callable[[AttemptRecord], None],
        on_serve: Callable[[Route], None] = lambda route: None,
        adapters: Callable[[BackendConfig], Adapter] = adapter_for,
    ) -> None:
        self.route = route
        self.sensitive = sensitive
        self.on_attempt = on_attempt
        self.on_serve = on_serve
        self.adapters = adapters
        self._failed_here: set[str] = set()

    # ── bookkeeping ──
    def _report(self, route: Route, outcome: str, started: float | None, status: int | None, *, at_fault: bool = False) -> None:
        name = route.backend.name
        health = None
        if at_fault:
            health = FAILURE
            self._failed_here.add(name)
        elif outcome == "ok" and (route.backend_failures or name in self._failed_here):
            health = RECOVERED
            self._failed_here.discard(name)
        latency = (time.perf_counter() - started) * 1000.0 if started is not None else 0.0
        self.on_attempt(AttemptRecord(route=route, outcome=outcome, latency_ms=latency, status=status, health=health))

    def _candidates(self) -> Iterator[Route]:
        """The chain in order, lazily: a link is looked at (and a skip recorded) only when the
        links before it have failed."""
        now = timezone.now()
        for candidate in self.route.candidates():
            if not may_reach(candidate.backend, sensitive=self.sensitive):
                self._report(candidate, "skipped_classification", None, None)
            elif candidate.circuit_open_until is not None and candidate.circuit_open_until > now:
                self._report(candidate, "skipped_circuit_open", None, None)
            else:
                yield candidate

    def _none_usable(self) -> UpstreamError:
        now = timezone.now()
        reopening = [c.circuit_open_until for c in self.route.candidates() if c.circuit_open_until and c.circuit_open_until > now]
        return no_backend(self.route, min(reopening).timestamp() - now.timestamp() if reopening else None)

    async def _after_failure(self, route: Route, attempt: int, exc: UpstreamError, started: float) -> bool:
        """Record a failed try; True to try the same backend again (after the backoff)."""
        self._report(route, exc.code, started, exc.upstream_status, at_fault=backend_at_fault(exc))
        if not backend_at_fault(exc):
            raise exc
        delay = retry_delay(attempt, exc) if attempt < route.backend.max_retries else None
        if delay is None:
            return False
        await asyncio.sleep(delay)
        return True

    # ── calls ──
    async def _call(self, body: dict[str, Any], call: Callable[[Adapter, dict[str, Any]], Awaitable[Any]]) -> dict[str, Any]:
        failure: UpstreamError | None = None
        for candidate in self._candidates():
            adapter = self.adapters(candidate.backend)
            payload = {**body, "model": candidate.upstream_model}
            attempt = 0
            while True:
                started = time.perf_counter()
                try:
                    result = await call(adapter, payload)
                except UpstreamError as exc:
                    failure = exc
                    if await self._after_failure(candidate, attempt, exc, started):
                        attempt += 1
                        continue
                    break
                self.on_serve(candidate)
                self._report(candidate, "ok", started, 200)
                return result
        raise failure or self._none_usable()

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(body, lambda adapter, payload: adapter.chat(payload))

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(body, lambda adapter, payload: adapter.embeddings(payload))

    async def chat_stream(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        failure: UpstreamError | None = None
        for candidate in self._candidates():
            adapter = self.adapters(candidate.backend)
            payload = {**body, "model": candidate.upstream_model}
            attempt = 0
            while True:
                started = time.perf_counter()
                try:
                    chunks = adapter.chat_stream(payload)
                    first = await _first_chunk(chunks, adapter.backend.name)
                except UpstreamError as exc:
                    failure = exc
                    if await self._after_failure(candidate, attempt, exc, started):
                        attempt += 1
                        continue
                    break
                # Committed: this chunk goes to the client, so nothing below is retried.
                self.on_serve(candidate)
                relay = self._relay(candidate, chunks, first, started)
                try:
                    async for chunk in relay:
                        yield chunk
                finally:
                    await relay.aclose()
                return
        raise failure or self._none_usable()

    async def _relay(
        self, route: Route, chunks: AsyncIterator[dict[str, Any]], first: dict[str, Any], started: float
    ) -> AsyncGenerator[dict[str, Any], None]:
        outcome, status, at_fault = "client_disconnected", None, False
        try:
            yield first
            async for chunk in chunks:
                yield chunk
            outcome, status = "ok", 200
        except UpstreamError as exc:
            outcome, status, at_fault = exc.code, exc.upstream_status, backend_at_fault(exc)
            raise
        finally:
            await _close(chunks)
            self._report(route, outcome, started, status, at_fault=at_fault)


async def _first_chunk(chunks: AsyncIterator[dict[str, Any]], backend: str) -> dict[str, Any]:
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        raise UpstreamError(f"{backend} ended the stream before sending anything", status=502, retryable=True) from None


async def _close(chunks: AsyncIterator[dict[str, Any]]) -> None:
    """Adapters' streams are async generators; closing one releases its upstream connection."""
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def dispatch(
    route: Route, *, sensitive: bool, on_attempt: Callable[[AttemptRecord], None], on_serve: Callable[[Route], None]
) -> Dispatcher:
    """The one way the pipeline reaches a backend. `on_attempt` hears of every try and skip;
    `on_serve` of the route whose answer the client gets (a stream's: before its first chunk)."""
    return Dispatcher(route, sensitive=sensitive, on_attempt=on_attempt, on_serve=on_serve)
