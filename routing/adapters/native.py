"""HTTP plumbing for adapters that speak a provider's own wire format (Anthropic, Gemini).

One job: send a JSON request and hand back the JSON answer or the SSE events, turning every
way the call can fail into an UpstreamError — within the backend's deadlines, and without the
provider credential ever appearing in a message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar, NoReturn

import httpx

from .base import Adapter, UpstreamError
from .http import is_connect_timeout, is_timeout, raise_for_upstream
from .sse import SSEvent, iter_sse


class NativeAdapter(Adapter):
    label: ClassVar[str]

    def _httpx_timeout(self) -> httpx.Timeout:
        # The asyncio deadlines below are the ones that count; httpx's are only a backstop.
        return httpx.Timeout(self.deadlines.total, connect=self.deadlines.connect)

    def raise_for_status(self, response: httpx.Response, raw: bytes) -> NoReturn:
        """Map a non-2xx answer; subclasses refine it for provider quirks, then call this."""
        raise_for_upstream(response, raw, provider=self.label)
        raise UpstreamError(f"{self.label} returned HTTP {response.status_code}", status=502)

    def _fail(self, response: httpx.Response, raw: bytes) -> NoReturn:
        try:
            self.raise_for_status(response, raw)
        except UpstreamError as exc:
            raise self.scrubbed(exc) from None

    def _timed_out(self, what: str, seconds: float) -> UpstreamError:
        return UpstreamError(f"{self.label} {what} within {seconds:g} s", status=504, retryable=True, code="upstream_timeout")

    def _not_reached(self, exc: Exception, what: str, seconds: float) -> UpstreamError:
        """No response at all: the connect deadline, `what` within `seconds`, or a refusal."""
        if is_connect_timeout(exc):
            return self._timed_out("did not accept the connection", self.deadlines.connect)
        if is_timeout(exc):
            return self._timed_out(what, seconds)
        return self._unreachable(exc)

    def _unreachable(self, exc: Exception) -> UpstreamError:
        # The class name only: httpx messages can carry the URL, and some providers accept keys in it.
        return UpstreamError(
            f"{self.label} is unreachable ({type(exc).__name__})", status=502, retryable=True, code="upstream_unreachable"
        )

    async def post_json(self, url: str, payload: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        total = self.deadlines.total
        try:
            async with asyncio.timeout(total):
                response = await self.client.post(url, json=payload, headers=headers, timeout=self._httpx_timeout())
                raw = await response.aread()
        except (TimeoutError, httpx.TransportError) as exc:
            raise self._not_reached(exc, "did not answer", total) from exc
        if response.status_code >= 400:
            self._fail(response, raw)
        try:
            result = json.loads(raw)
        except ValueError as exc:
            raise UpstreamError(f"{self.label} returned a body that is not JSON", status=502) from exc
        if not isinstance(result, dict):
            raise UpstreamError(f"{self.label} returned JSON that is not an object", status=502)
        return result

    async def stream_events(self, url: str, payload: dict[str, Any], headers: dict[str, str]) -> AsyncIterator[SSEvent]:
        """The provider's SSE events; closes the upstream connection however iteration ends."""
        deadlines = self.deadlines
        loop = asyncio.get_running_loop()
        started = loop.time()
        end = started + deadlines.total
        first_by = min(end, started + deadlines.first_byte)
        request = self.client.build_request("POST", url, json=payload, headers=headers, timeout=self._httpx_timeout())
        try:
            async with asyncio.timeout_at(first_by):
                response = await self.client.send(request, stream=True)
        except (TimeoutError, httpx.TransportError) as exc:
            raise self._not_reached(exc, "did not start answering", first_by - started) from exc
        events = iter_sse(response)
        received = False
        try:
            if response.status_code >= 400:
                async with asyncio.timeout_at(end):
                    raw = await response.aread()
                self._fail(response, raw)
            while True:
                # A per-read deadline rather than one around the loop: a timeout scope must not
                # stay open across `yield`, or it would cancel whatever the consumer is doing.
                try:
                    async with asyncio.timeout_at(end if received else first_by):
                        event = await anext(events)
                except StopAsyncIteration:
                    return
                received = True
                yield event
        except TimeoutError as exc:
            if received:
                raise self._timed_out("did not finish the stream", deadlines.total) from exc
            raise self._timed_out("sent no event", first_by - started) from exc
        except httpx.TransportError as exc:
            # httpx-aiohttp reports a dropped connection as a (connect) timeout: after the
            # headers every transport error is a broken stream.
            raise UpstreamError(
                f"{self.label} broke the stream ({type(exc).__name__})", status=502, retryable=True, code="upstream_stream_broken"
            ) from exc
        finally:
            await events.aclose()
            await response.aclose()


def event_json(event: SSEvent, provider: str) -> dict[str, Any]:
    try:
        data = json.loads(event.data)
    except ValueError as exc:
        raise UpstreamError(f"{provider} sent a stream event that is not JSON", status=502) from exc
    if not isinstance(data, dict):
        raise UpstreamError(f"{provider} sent a stream event that is not a JSON object", status=502)
    return data
