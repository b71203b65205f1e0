"""How a provider call fails, as the UpstreamError the dispatcher and the client act on.

Two ways to fail: the provider answered with an error status (`raise_for_upstream`), or no
answer came at all (`no_response`: refused, not resolvable, TLS, a deadline, a dropped
connection). Both name what happened and where, never the request URL (some providers take
keys in it) nor the credential.
"""

from __future__ import annotations

import enum
import errno
import json
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import httpx

from .base import UpstreamError

# Error codes OpenAI-compatible providers give a prompt their content policy refused.
CONTENT_POLICY_CODES = frozenset({"content_filter", "content_policy_violation"})


class NoResponse(enum.Enum):
    """Why a call got no response."""

    CONNECT_TIMEOUT = "connect_timeout"  # the backend's connect deadline passed
    TIMEOUT = "timeout"  # a later deadline passed
    REFUSED = "refused"
    DNS = "dns"
    TLS = "tls"
    OTHER = "other"  # reset, closed before answering, ...


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def why_no_response(exc: BaseException) -> NoResponse:
    """Classify the exception a call without a response raised.

    The httpx class alone cannot be trusted: httpx-aiohttp maps every aiohttp connection
    error, a refused connection and a failed DNS lookup included, to httpx.ConnectTimeout.
    The aiohttp (or OS) exception it chains from says what really happened.
    """
    chain = list(_chain(exc))
    aio = next((e for e in chain if isinstance(e, aiohttp.ClientError)), None)
    if isinstance(aio, aiohttp.ConnectionTimeoutError):
        return NoResponse.CONNECT_TIMEOUT
    if isinstance(aio, aiohttp.ClientConnectorDNSError):
        return NoResponse.DNS
    if isinstance(aio, aiohttp.ClientSSLError):
        return NoResponse.TLS
    if isinstance(aio, aiohttp.ServerTimeoutError):
        return NoResponse.TIMEOUT
    for cause in chain:
        if isinstance(cause, socket.gaierror):
            return NoResponse.DNS
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return NoResponse.TLS
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return NoResponse.REFUSED
        if aio is None and isinstance(cause, httpx.ConnectTimeout):
            return NoResponse.CONNECT_TIMEOUT
        if isinstance(cause, TimeoutError) or (aio is None and isinstance(cause, httpx.TimeoutException)):
            return NoResponse.TIMEOUT
    return NoResponse.OTHER


def address_of(url: str) -> str:
    """`host:port` of a URL: where the call went, without path or query (keys can live there)."""
    parsed = httpx.URL(url)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{host}:{port}"


def no_response(
    exc: BaseException, *, provider: str, backend: str, url: str, connect: float, what: str, seconds: float
) -> UpstreamError:
    """The error for a call that got no response: a deadline is a 504, anything else a 502;
    both retryable (another try or another backend may answer) except a TLS failure, which a
    retry of the same backend cannot fix. `what` within `seconds` names the deadline that
    applied if it was not the connect one."""
    where = f"{provider} backend '{backend}' at {address_of(url)}"
    cause = why_no_response(exc)
    if cause is NoResponse.CONNECT_TIMEOUT:
        return _timeout(f"{where} did not accept the connection within {connect:g} s")
    if cause is NoResponse.TIMEOUT:
        return _timeout(f"{provider} {what} within {seconds:g} s")
    if cause is NoResponse.REFUSED:
        message = f"connection refused by {where}"
    elif cause is NoResponse.DNS:
        message = f"{provider} backend '{backend}': cannot resolve {httpx.URL(url).host}"
    elif cause is NoResponse.TLS:
        reason = next((str(found) for e in _chain(exc) if (found := getattr(e, "reason", None))), "")
        message = f"TLS with {where} failed" + (f" ({reason})" if reason else "")
    else:
        # The innermost class names the failure (ServerDisconnectedError, ConnectionResetError);
        # messages are left out, they can carry the URL.
        message = f"{where} failed before answering ({type(list(_chain(exc))[-1]).__name__})"
    return UpstreamError(message, status=502, retryable=cause is not NoResponse.TLS, code="upstream_unreachable")


def _timeout(message: str) -> UpstreamError:
    return UpstreamError(message, status=504, retryable=True, code="upstream_timeout")


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
