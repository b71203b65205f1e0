"""The one shared upstream HTTP client per worker process, and HTTP error mapping."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import HttpxAiohttpClient

from .base import UpstreamError

# Error codes OpenAI-compatible providers give a prompt their content policy refused.
CONTENT_POLICY_CODES = frozenset({"content_filter", "content_policy_violation"})

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
        client = HttpxAiohttpClient(
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
            follow_redirects=False,
            trust_env=False,
        )
        _client = (loop, client)
    return _client[1]


def is_timeout(exc: BaseException) -> bool:
    """Whether a failure before the response was a deadline rather than a refusal.

    httpx-aiohttp maps every aiohttp connection error, a refused connection included, to
    httpx.ConnectTimeout; the aiohttp cause tells the two apart.
    """
    if isinstance(exc, TimeoutError):
        return True
    if not isinstance(exc, httpx.TimeoutException):
        return False
    cause = exc.__cause__
    return not (isinstance(cause, aiohttp.ClientError) and not isinstance(cause, TimeoutError))


def is_connect_timeout(exc: BaseException) -> bool:
    """Whether the deadline that passed was the connect one (the backend's `connect_timeout`)."""
    if not is_timeout(exc):
        return False
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError):  # httpx-aiohttp calls every timeout a ConnectTimeout
        return isinstance(cause, aiohttp.ConnectionTimeoutError)
    return isinstance(exc, httpx.ConnectTimeout)


def raise_for_upstream(response: httpx.Response, body: bytes, *, provider: str) -> None:
    """Turn a non-2xx provider response into an UpstreamError the client can act on.

    Client-side faults the provider reports (400, 404 model, 413, 422) are passed on as 400 so
    the caller can fix the request; the provider's own auth failures are the operator's
    problem, so the client gets 502, never the provider's 401 (its key is not the client's).
    """
    status = response.status_code
    message = _provider_message(body) or f"HTTP {status}"
    retry_after = _retry_after(response)
    detail = f"{provider} returned {status}: {message}"
    if status == 429:
        raise UpstreamError(
            detail, status=429, retryable=True, upstream_status=status, code="upstream_rate_limited", retry_after=retry_after
        )
    if status in (401, 403):
        raise UpstreamError(
            f"{provider} rejected the gateway's credentials ({status})",
            status=502,
            upstream_status=status,
            code="upstream_auth_failed",
        )
    if status in (400, 404, 413, 422):
        # A provider's own content policy refusing the prompt (Azure's content filter, OpenAI's
        # moderation) keeps its name, as a Gemini block does, so clients can tell it from a typo.
        code = "content_filter" if _provider_code(body) in CONTENT_POLICY_CODES else "upstream_invalid_request"
        raise UpstreamError(detail, status=400, upstream_status=status, code=code)
    if status in (503, 529):
        raise UpstreamError(
            detail, status=503, retryable=True, upstream_status=status, code="upstream_overloaded", retry_after=retry_after
        )
    raise UpstreamError(detail, status=502, retryable=status >= 500, upstream_status=status)


_NOT_JSON = object()


def _provider_error(body: bytes) -> Any:
    """The provider's `error` member (or its whole JSON answer); None if that is no object."""
    try:
        payload: Any = json.loads(body)
    except ValueError:
        return _NOT_JSON
    if isinstance(payload, list) and payload:  # Gemini wraps errors in a list when streaming
        payload = payload[0]
    return payload.get("error", payload) if isinstance(payload, dict) else None


def _provider_code(body: bytes) -> str:
    error = _provider_error(body)
    return str(error.get("code") or "") if isinstance(error, dict) else ""


def _provider_message(body: bytes) -> str:
    error = _provider_error(body)
    if error is _NOT_JSON:
        return body[:200].decode("utf-8", "replace").strip()
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "")[:500]
    return "" if error is None else str(error)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the provider asks us to wait: OpenAI and Azure's `retry-after-ms`, else
    `Retry-After` in either of its RFC 9110 forms (seconds, or an HTTP date)."""
    milliseconds = response.headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000.0)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
