"""W3C trace context on /v1: continue a client's trace, or start one; answer with it.

Each request is one span of its trace. A valid incoming `traceparent` gives the trace id (and
the sampled flag); the gateway's own span id is new either way, so the upstream call and the
response name the gateway as the parent. An invalid header is ignored, as the W3C spec says:
a client's broken header must not cost it the request.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import SpanKind

from routing.trace import current_traceparent

from . import otel

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

# version 00: 2 hex, 32 hex trace id, 16 hex parent id, 2 hex flags (lower-case only).
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


@dataclass(frozen=True, slots=True)
class SpanContext:
    trace_id: str
    span_id: str
    flags: str = "01"

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def parse(header: str) -> tuple[str, str] | None:
    """(trace id, flags) of a valid `traceparent`, else None."""
    match = _TRACEPARENT.match(header.strip())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    # ff is forbidden; version 00 has no trailing fields; all-zero ids are invalid.
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return None
    return trace_id, flags


def span_for(header: str | None) -> SpanContext:
    """The gateway's span: a child of the client's span if it sent one, else a new trace's root."""
    parsed = parse(header) if header else None
    trace_id, flags = parsed if parsed else (secrets.token_hex(16), "01")
    return SpanContext(trace_id=trace_id, span_id=secrets.token_hex(8), flags=flags)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


_ROUTES = frozenset({"/v1/chat/completions", "/v1/embeddings", "/v1/models"})


def with_trace_context(app: App) -> App:
    """Set `current_traceparent` for the request and add `traceparent` to its response; with
    OpenTelemetry on, the request's SERVER span is the gateway's span (synapse/otel.py)."""

    async def traced(scope: dict[str, Any], receive: Any, send: Any) -> None:
        incoming = _header(scope, b"traceparent")
        if not otel.recording():
            await _serve(app, scope, receive, send, span_for(incoming).traceparent)
            return
        # A span name from a fixed set: an unknown path must not create a new name per request.
        route = scope["path"] if scope["path"] in _ROUTES else "/v1/*"
        parent = otel.parent_context(incoming if incoming and parse(incoming) else None)
        with otel.tracer().start_as_current_span(
            f"{scope['method']} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": scope["method"], "url.path": scope["path"], "http.route": route},
        ) as span:
            token = otel.request_span.set(span)
            try:
                await _serve(app, scope, receive, send, otel.traceparent_of(span))
            finally:
                otel.request_span.reset(token)

    return traced


async def _serve(app: App, scope: dict[str, Any], receive: Any, send: Any, traceparent: str) -> None:
    header = traceparent.encode()

    async def send_with_trace(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"traceparent", header)]}
        await send(message)

    token = current_traceparent.set(traceparent)
    try:
        await app(scope, receive, send_with_trace)
    finally:
        current_traceparent.reset(token)
