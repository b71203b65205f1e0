"""The lean /v1 handler: Django's ASGIHandler without per-request signals and sync middleware.

The one module that relies on Django's private handler internals: `load_middleware` sets
`_middleware_chain` (and the three `_*_middleware` lists) itself around `_get_response_async`,
`get_response_async` appends to `response._resource_closers`, and `_handle_lean` is a copy of
`ASGIHandler.handle` without the `request_started` / `request_finished` signals (each a thread
hop on an async request) and with `_read_bounded` in place of `read_body` (which spools a body of
any size to a temporary file before a view can refuse it). `synapse/tests/test_lean_asgi.py`
checks every member used here and fingerprints `ASGIHandler.handle`, so a Django upgrade that
changes them fails there, by name: compare the new `handle` with `_handle_lean`, then update the
fingerprint.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Awaitable, Callable
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponseBase
from django.urls import set_script_prefix, set_urlconf

from . import shutdown
from .errors import GatewayError, body_timeout, payload_too_large
from .middleware import request_id_middleware
from .views import allowed_hosts_only


class ApiASGIHandler(ASGIHandler):
    # Set by `load_middleware` below; Django's stubs leave these private members out.
    _middleware_chain: Callable[[HttpRequest], Awaitable[HttpResponseBase]]

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Callable[..., Any]] = []
        self._template_response_middleware: list[Callable[..., Any]] = []
        self._exception_middleware: list[Callable[..., Any]] = []
        private = self._get_response_async if is_async else self._get_response  # type: ignore[attr-defined]  # private Django API
        handler = convert_exception_to_response(private)
        # The async chain is the one ASGIHandler loads (is_async=True): its handler is awaitable.
        checked = allowed_hosts_only(cast(Callable[[HttpRequest], Awaitable[HttpResponseBase]], handler)) if is_async else handler
        self._middleware_chain = cast(
            Callable[[HttpRequest], Awaitable[HttpResponseBase]],
            convert_exception_to_response(request_id_middleware(checked)),
        )

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        set_urlconf(settings.ROOT_URLCONF)
        response = await self._middleware_chain(request)
        response._resource_closers.append(request.close)  # type: ignore[attr-defined]  # private Django API
        return response

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # No ThreadSensitiveContext (Django's handler opens one per request): it starts an OS
        # thread per request and joins it at the end. The database hops run on the worker's
        # long-lived pool instead (`synapse.db.run_db`).
        await self._handle_lean(scope, receive, send)

    async def _read_bounded(self, scope: dict[str, Any], receive: Any) -> tuple[io.BytesIO, GatewayError | None]:
        """The body, in memory and never past SYNAPSE_MAX_BODY_BYTES: a declared length over the
        limit is refused before a byte is read, a chunked body as soon as it passes the limit,
        and a body slower than SYNAPSE_BODY_READ_TIMEOUT is refused when the time is up."""
        limit, seconds = settings.SYNAPSE["MAX_BODY_BYTES"], settings.SYNAPSE["BODY_READ_TIMEOUT"]
        body = io.BytesIO()
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.strip().isdigit() and int(declared) > limit:
            return body, payload_too_large(limit)
        try:
            async with asyncio.timeout(seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise RequestAborted()
                    body.write(message.get("body", b""))
                    if body.tell() > limit:
                        return io.BytesIO(), payload_too_large(limit)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return io.BytesIO(), body_timeout(seconds)
        body.seek(0)
        return body, None

    async def _refuse_unread(self, request: HttpRequest, refused: GatewayError, send: Any) -> None:
        """Answer a request whose body was not read to its end (the view audits the refusal),
        then close the connection instead of reading the rest."""
        request.synapse_body_error = refused  # type: ignore[attr-defined]  # ours, read by the view with getattr
        with shutdown.inflight():
            response = await self.run_get_response(request)
            response["Connection"] = "close"
            await self.send_response(response, send)
        response.close()

    async def _handle_lean(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's `ASGIHandler.handle` without the request signals' thread hops."""
        try:
            body_file, refused = await self._read_bounded(scope, receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None  # create_request returns a request or an error response
            body_file.close()
            await self.send_response(error_response, send)
            return
        if refused is not None:
            await self._refuse_unread(request, refused, send)
            body_file.close()
            return

        state = shutdown.ResponseState(send, scope.get("path", ""))

        async def process_request() -> HttpResponseBase:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, state.send)
            return response

        # Listening for the disconnect lets a streaming response be cancelled when the client
        # goes away (the pipeline then closes the upstream and still writes the audit row).
        disconnect = asyncio.create_task(self.listen_for_disconnect(receive))
        respond = asyncio.create_task(process_request())
        tasks: list[asyncio.Task[Any]] = [disconnect, respond]
        try:
            with shutdown.inflight():
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError as exc:
            if not shutdown.is_shutdown_cut(exc):
                for task in tasks:
                    task.cancel()
                raise
            # The worker's grace ran out with this request still running: cut it, audited.
            with shutdown.inflight():
                await shutdown.cut(tasks, state)
            if not respond.cancelled() and respond.exception() is None:
                respond.result().close()
            body_file.close()
            return
        for task in tasks:
            if task.done():
                with contextlib.suppress(RequestAborted):
                    task.result()
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if not respond.cancelled():
            respond.result().close()
        body_file.close()
