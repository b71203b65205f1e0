"""The HTTP layer every remote adapter stands on; adapters above it only translate.

One job: send a provider request and hand back its JSON answer, or its event stream
translated to OpenAI chunks, turning every way the call can fail into an UpstreamError
that names its cause and never carries the provider credential. Every request carries the
W3C `traceparent` of the request being served (a new span per attempt).

The backend's deadlines are enforced here and nowhere else (the dispatcher above has none):
- connect: httpx's connect timeout, so a host that never accepts fails on it, not on the total;
- first byte (streams): until the first translated chunk — an event that translates to
  nothing (a ping, Anthropic's message_start) does not count, since the first chunk is what
  commits the dispatcher to this backend;
- total: the whole call, a stream included, from the moment the request is sent.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import aiohttp
import httpx
from httpx_aiohttp import HttpxAiohttpClient
from httpx_aiohttp.transport import AiohttpTransport

from ..trace import traceparent_headers
from .base import Adapter, BackendConfig, Operation, UpstreamError
from .errors import no_response, raise_for_upstream
from .sse import SSEvent, iter_sse

_client: tuple[asyncio.AbstractEventLoop | None, httpx.AsyncClient] | None = None


def shared_client() -> httpx.AsyncClient:
    """The worker's one client, created lazily inside its event loop (an aiohttp session is
    bound to the loop it was made in; a process that runs another loop later — a test, a
    command — gets a client of its own for that loop).

    httpx on the aiohttp transport: measured here at ~2.5x the throughput of httpx's default
    transport for a proxied request (see README, "Dependencies").
    """
    global _client
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if _client is None or _client[0] is not loop or _client[1].is_closed:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
        transport = AiohttpTransport(limits=limits, trust_env=False, client=functools.partial(_session, limits))
        client = _CookielessClient(transport=transport, follow_redirects=False, trust_env=False)
        _client = (loop, client)
    return _client[1]


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing and sends nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set_cookie_header(self, request: httpx.Request) -> None:
        pass


_NO_COOKIES = _NoCookies()


class _CookielessClient(HttpxAiohttpClient):
    """The shared client keeps no cookies: one a provider sets in an answer to one key's request
    (OpenAI's edge sets `__cf_bm`) would otherwise go out with every later request of every team
    to that host. Nor does it spend time parsing them (~2 % of a loaded worker)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        pass


def _session(limits: httpx.Limits) -> aiohttp.ClientSession:
    """The transport's aiohttp session as httpx-aiohttp makes it, without aiohttp's own cookie jar."""
    connector = aiohttp.TCPConnector(
        limit=limits.max_connections or 0,
        keepalive_timeout=limits.keepalive_expiry,
        ssl=httpx.create_ssl_context(trust_env=False),
    )
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Seconds to connect, to the first streamed chunk, and for the whole call (stream included).

    `first_byte` only bounds streams: a non-streaming answer's first byte comes when the whole
    answer is ready, so there it is `total` that counts.
    """

    connect: float
    first_byte: float
    total: float

    @classmethod
    def for_backend(cls, backend: BackendConfig, total: float) -> Deadlines:
        connect = backend.connect_timeout or min(5.0, total)
        first_byte = backend.first_byte_timeout or total
        return cls(connect=min(connect, total), first_byte=min(first_byte, total), total=total)


class StreamTranslator(Protocol):
    """A provider's events in, OpenAI chunks out; one instance per stream."""

    @property
    def done(self) -> bool:
        """The provider said the stream is complete (anything after is not read)."""
        ...

    def feed(self, event: SSEvent) -> list[dict[str, Any]]:
        """The chunks one event makes (often none); raises UpstreamError for an error event."""
        ...

    def close(self) -> list[dict[str, Any]]:
        """The chunks due when the stream ends; raises UpstreamError if it ended too soon."""
        ...


class HttpAdapter(Adapter):
    """An adapter that reaches its provider over HTTP (every kind but `mock`)."""

    operations = frozenset({Operation.CHAT, Operation.CHAT_STREAM})

    @property
    def deadlines(self) -> Deadlines:
        return Deadlines.for_backend(self.backend, self.timeout)

    # ── credentials ──
    def secrets(self) -> list[str]:
        """Every credential this adapter sends, to be scrubbed from what providers echo back."""
        credential = self.backend.credential()
        return [credential] if credential else []

    def redact(self, text: str) -> str:
        """Providers sometimes echo what they were sent; the gateway's key must not go further."""
        for secret in self.secrets():
            if len(secret) >= 8:  # a short value would blank out ordinary words, and guards nothing
                text = text.replace(secret, "[redacted]")
        return text

    def scrubbed(self, exc: UpstreamError) -> UpstreamError:
        exc.message = self.redact(exc.message)
        exc.args = (exc.message,)
        return exc

    # ── errors ──
    def raise_for_status(self, response: httpx.Response, raw: bytes) -> NoReturn:
        """Map a non-2xx answer; subclasses refine it for provider quirks, then call this."""
        raise_for_upstream(response, raw, provider=self.label)
        raise UpstreamError(f"{self.label} returned HTTP {response.status_code}", status=502)

    def _fail(self, response: httpx.Response, raw: bytes) -> NoReturn:
        try:
            self.raise_for_status(response, raw)
        except UpstreamError as exc:
            raise self.scrubbed(exc) from None

    def _no_response(self, exc: Exception, url: str, what: str, seconds: float) -> UpstreamError:
        return self.scrubbed(
            no_response(
                exc, provider=self.label, backend=self.backend.name, url=url,
                connect=self.deadlines.connect, what=what, seconds=seconds,
            )
        )  # fmt: skip

    def _timed_out(self, what: str, seconds: float) -> UpstreamError:
        return UpstreamError(f"{self.label} {what} within {seconds:g} s", status=504, retryable=True, code="upstream_timeout")

    # ── calls ──
    def _request(self, url: str, payload: dict[str, Any], headers: dict[str, str]) -> httpx.Request:
        # httpx's own timeouts: the connect one is the deadline that counts; the others only
        # back up the asyncio deadlines below.
        timeout = httpx.Timeout(self.deadlines.total, connect=self.deadlines.connect)
        return self.client.build_request("POST", url, json=payload, headers={**headers, **traceparent_headers()}, timeout=timeout)

    async def post_json(self, url: str, payload: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        """POST `payload` and return the JSON object answered, within the total deadline."""
        total = self.deadlines.total
        request = self._request(url, payload, headers)
        try:
            async with asyncio.timeout(total):
                response = await self.client.send(request)
                raw = await response.aread()
        except (TimeoutError, httpx.TransportError) as exc:
            raise self._no_response(exc, url, "did not answer", total) from exc
        if response.status_code >= 400:
            self._fail(response, raw)
        try:
            result = json.loads(raw)
        except ValueError as exc:
            raise UpstreamError(f"{self.label} returned a body that is not JSON", status=502) from exc
        if not isinstance(result, dict):
            raise UpstreamError(f"{self.label} returned JSON that is not an object", status=502)
        return result

    async def stream(
        self, url: str, payload: dict[str, Any], headers: dict[str, str], translator: StreamTranslator
    ) -> AsyncIterator[dict[str, Any]]:
        """POST `payload` and yield its SSE events translated to OpenAI chunks; closes the
        upstream connection however iteration ends."""
        deadlines = self.deadlines
        started = asyncio.get_running_loop().time()
        end = started + deadlines.total
        first_by = min(end, started + deadlines.first_byte)
        request = self._request(url, payload, headers)
        try:
            async with asyncio.timeout_at(first_by):
                response = await self.client.send(request, stream=True)
        except (TimeoutError, httpx.TransportError) as exc:
            raise self._no_response(exc, url, "did not start answering", first_by - started) from exc
        events = iter_sse(response)
        sent = False
        try:
            if response.status_code >= 400:
                async with asyncio.timeout_at(end):
                    raw = await response.aread()
                self._fail(response, raw)
            while not translator.done:
                # A deadline per read, never one held open across `yield` (it would cancel
                # whatever the consumer does in between).
                try:
                    async with asyncio.timeout_at(end if sent else first_by):
                        event = await anext(events)
                except StopAsyncIteration:
                    break
                for chunk in self._translated(translator.feed, event):
                    sent = True
                    yield chunk
            for chunk in self._translated(translator.close):
                yield chunk
        except TimeoutError as exc:
            if sent:
                raise self._timed_out("did not finish the stream", deadlines.total) from exc
            raise self._timed_out("sent nothing", first_by - started) from exc
        except httpx.TransportError as exc:
            # After the headers every transport error is a broken stream (httpx-aiohttp calls
            # a dropped connection a connect timeout). Retryable: the dispatcher only retries
            # or fails over before the first chunk went out.
            raise UpstreamError(
                f"{self.label} broke the stream ({type(exc).__name__})", status=502, retryable=True, code="upstream_stream_broken"
            ) from exc
        finally:
            await events.aclose()
            await response.aclose()

    def _translated(self, step: Callable[..., list[dict[str, Any]]], *args: Any) -> list[dict[str, Any]]:
        try:
            return step(*args)
        except UpstreamError as exc:
            raise self.scrubbed(exc) from None
