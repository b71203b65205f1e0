"""Graceful shutdown: what happens to a request still running when the worker's grace runs out.

On SIGTERM gunicorn stops accepting and gives each worker SYNAPSE_GRACEFUL_TIMEOUT seconds;
in-flight requests and streams carry on meanwhile. A little before that deadline (`cut_after`)
uvicorn cancels what is still running. The /v1 handler then cuts the request here instead of
letting the process die under it: the pipeline writes its audit row — decision
`cut_at_shutdown`, with the usage and answer hash of what was sent so far — and the client gets
an SSE error event (a stream) or a 503 (an answer not yet started), so an SDK raises instead
of returning a silently truncated answer. The worker's lifespan shutdown waits for those cuts
to finish before the process exits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

# The message uvicorn cancels a request's task with when its graceful shutdown times out.
UVICORN_CUT_MESSAGE = "Task cancelled, timeout graceful shutdown exceeded"
CUT_MESSAGE = "The gateway is shutting down and cut this request before it finished. Retry it."
# What the cut itself needs (abort the upstream, write the audit row, send the error event).
_CUT_MARGIN_SECONDS = 5.0

_cutting = False
_inflight: set[asyncio.Task[Any]] = set()  # this worker's /v1 requests being served


def cut_after(graceful_timeout: float) -> float:
    """Seconds after SIGTERM at which a worker cuts what is still running (before the kill)."""
    return max(0.5, graceful_timeout - min(_CUT_MARGIN_SECONDS, graceful_timeout / 2))


def is_shutdown_cut(exc: asyncio.CancelledError) -> bool:
    return bool(exc.args) and exc.args[0] == UVICORN_CUT_MESSAGE


def disconnect_verdict() -> dict[str, Any]:
    """How the pipeline records a request that ended before it finished: the client left, or
    (once this worker has started cutting) the gateway cut it at shutdown."""
    # Imported here, not at the top: the gunicorn master loads this module through the worker
    # class (synapse/worker.py) before Django's apps are ready, and errors imports a model.
    from .errors import Decision

    if _cutting:
        return {"decision": Decision.CUT_AT_SHUTDOWN, "status": 503, "code": "server_shutdown", "message": CUT_MESSAGE}
    return {"decision": Decision.CLIENT_DISCONNECTED, "status": 499, "code": "client_disconnected", "message": ""}


class ResponseState:
    """What has gone to the client so far, so a cut request can be ended properly."""

    def __init__(self, send: Any, path: str = "") -> None:
        self._send = send
        self.path = path  # which door: the cut answers in that door's error shape
        self.started = False
        self.finished = False
        self.event_stream = False

    async def send(self, message: Mapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            content_type = next((v for k, v in message.get("headers") or [] if bytes(k).lower() == b"content-type"), b"")
            self.event_stream = bytes(content_type).startswith(b"text/event-stream")
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished = True
        await self._send(message)


class inflight:  # noqa: N801 (used as a context manager, like contextlib's)
    """Mark the current task as serving a /v1 request until the block ends."""

    def __enter__(self) -> None:
        self.task = asyncio.current_task()
        if self.task is not None:
            _inflight.add(self.task)

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            _inflight.discard(self.task)


async def cut(tasks: list[asyncio.Task[Any]], state: ResponseState) -> None:
    """Cancel a request's tasks at shutdown; the pipeline audits it; tell the client why."""
    global _cutting
    _cutting = True
    try:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if state.finished:
            return
        # Imported here (see disconnect_verdict); the door decides the shape of the last word.
        from .errors import Decision, GatewayError
        from .wire.doors import wire_for_path

        refusal = GatewayError(
            status=503, message=CUT_MESSAGE, type="api_error", code="server_shutdown", decision=Decision.CUT_AT_SHUTDOWN,
            headers={"retry-after": "1"},
        )  # fmt: skip
        wire = wire_for_path(state.path)
        if state.started:
            # The stream's own encoder went with the cancelled task: a fresh one's error event is
            # in the same format (for the Responses door it restates response.created first).
            frame = b"".join(wire.encoder(request={}, model="", request_id="").error(refusal)) if state.event_stream else b""
            await state.send({"type": "http.response.body", "body": frame, "more_body": False})
        else:
            response = wire.error_response(refusal, request_id="")
            headers = [(name.lower().encode(), value.encode()) for name, value in response.items()]
            await state.send({"type": "http.response.start", "status": 503, "headers": headers})
            await state.send({"type": "http.response.body", "body": response.content, "more_body": False})
    except OSError:
        pass  # the client is gone too; the row is written either way


def waits_for_cuts(app: App) -> App:
    """Hold the worker's lifespan shutdown until the requests being cut have been audited."""

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def receive_after_cuts() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "lifespan.shutdown" and _inflight:
                # uvicorn cancelled these requests a moment ago; they are being cut now.
                await asyncio.wait(set(_inflight), timeout=_CUT_MARGIN_SECONDS)
            return message

        await app(scope, receive_after_cuts, send)

    return application
