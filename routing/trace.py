"""W3C trace context for the upstream call: the `traceparent` of the request being served.

The gateway sets `current_traceparent` for each /v1 request (synapse/tracing.py); adapters send
`traceparent_headers()` with their upstream call, so a provider's logs join the client's trace.
"""

from __future__ import annotations

import contextvars

current_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_traceparent", default=None)


def traceparent_headers() -> dict[str, str]:
    """The header to send upstream for the current request (none outside a request)."""
    value = current_traceparent.get()
    return {"traceparent": value} if value else {}
