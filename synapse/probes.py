"""/healthz, /readyz and /metrics: plain ASGI, ahead of Django.

None of them takes an API key or writes an audit row: they describe the process, not a governed
request. They bypass both Django handlers so a probe every few seconds costs no middleware,
and a database outage cannot make `/healthz` fail (Kubernetes would restart a healthy process).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from . import health, metrics

logger = logging.getLogger("synapse.probes")

PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# A readiness answer within a probe's usual timeout, even while the database hangs.
READY_TIMEOUT_SECONDS = 4.0


async def _answer(send: Any, status: int, body: bytes, content_type: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-store"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Any, status: int, payload: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await _answer(send, status, json.dumps(payload).encode(), "application/json", extra)


def _bearer(scope: dict[str, Any]) -> str:
    for key, value in scope.get("headers") or []:
        if key.lower() == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


async def _ready(send: Any) -> None:
    # Not thread-sensitive: a hung database must not hold the thread the requests' hops use.
    try:
        results = await asyncio.wait_for(
            sync_to_async(health.readiness, thread_sensitive=False)(), timeout=READY_TIMEOUT_SECONDS
        )
    except TimeoutError:
        results = {"database": f"no answer within {READY_TIMEOUT_SECONDS:g} s"}
    failed = sorted(name for name, result in results.items() if result != health.OK)
    status = 503 if failed else 200
    await _json(send, status, {"status": "unavailable" if failed else "ok", "failed": failed, "checks": results})


async def _metrics(scope: dict[str, Any], send: Any) -> None:
    token = settings.SYNAPSE["METRICS_TOKEN"]
    if token and not hmac.compare_digest(_bearer(scope).encode(), token.encode()):
        error = {"error": "metrics need the bearer token (SYNAPSE_METRICS_TOKEN)"}
        await _json(send, 401, error, [(b"www-authenticate", b"Bearer")])
        return
    body = await sync_to_async(metrics.exposition, thread_sensitive=False)()
    await _answer(send, 200, body, metrics.CONTENT_TYPE)


async def probes(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["method"] not in ("GET", "HEAD"):
        await _json(send, 405, {"error": "method not allowed"}, [(b"allow", b"GET, HEAD")])
        return
    path = scope["path"]
    if path == "/healthz":
        await _json(send, 200, {"status": "ok"})
    elif path == "/readyz":
        await _ready(send)
    else:
        await _metrics(scope, send)
