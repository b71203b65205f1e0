"""W3C Trace Context for upstream calls: each call is a child span of the request's span.

The gateway sets `current_traceparent` per request (from the client's `traceparent` header,
or a new trace); the HTTP layer of the adapters sends `traceparent_headers()` with every
upstream attempt, so a provider's logs join the client's trace. Each attempt (a retry, a
fallback) is its own span: same trace id, new span id.
"""

from __future__ import annotations

import contextvars
import re
import secrets

current_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_traceparent", default=None)

# version-traceid-parentid-flags, lower-case hex (https://www.w3.org/TR/trace-context/#traceparent-header).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def parse_traceparent(value: str) -> tuple[str, str] | None:
    """(trace id, flags) of a valid `traceparent`, else None.

    Version ff is forbidden and all-zero ids are invalid; version 00 has exactly four fields,
    while a later version may append fields, which a version-00 reader ignores.
    """
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id, flags


def traceparent_headers() -> dict[str, str]:
    """The `traceparent` header for one upstream attempt: a new span in the current trace.

    Empty outside a request, or if the context holds something malformed (a bad header must
    cost nobody the request).
    """
    value = current_traceparent.get()
    parsed = parse_traceparent(value) if value else None
    if parsed is None:
        return {}
    trace_id, flags = parsed
    return {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"}
