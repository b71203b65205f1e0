"""ASGI entry point: what gunicorn's uvicorn workers serve.

Two Django handlers share one process. The console (admin, static) gets the full stack; `/v1`
gets a lean one. On an async request every sync `MiddlewareMixin` (session, CSRF, auth,
messages), each request signal and the error-response logger costs a thread hop; on these
machines that added ~10 ms per request — more than the whole governance pipeline — and none
of it means anything to a bearer-token API. The pipeline returns its database connections to
the pool itself (`synapse.db.run_db`) and audits every request, errors included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponseBase
from django.urls import set_script_prefix, set_urlconf

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synapse.settings")

console_application = get_asgi_application()  # also runs django.setup()

from django.conf import settings  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402

from audit.alerts.background import with_background_tasks  # noqa: E402

from . import shutdown  # noqa: E402
from .middleware import request_id_middleware  # noqa: E402
from .probes import PATHS as PROBE_PATHS  # noqa: E402
from .probes import probes  # noqa: E402
from .tracing import with_trace_context  # noqa: E402


class ApiASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response_async if is_async else self._get_response)
        self._middleware_chain = convert_exception_to_response(request_id_middleware(handler))

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        set_urlconf(settings.ROOT_URLCONF)
        response: HttpResponseBase = await self._middleware_chain(request)
        response._resource_closers.append(request.close)
        return response

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async with ThreadSensitiveContext():
            await self._handle_lean(scope, receive, send)

    async def _handle_lean(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's `ASGIHandler.handle` without the request signals' thread hops."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        state = shutdown.ResponseState(send)

        async def process_request() -> HttpResponseBase:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, state.send)
            return response

        # Listening for the disconnect lets a streaming response be cancelled when the client
        # goes away (the pipeline then closes the upstream and still writes the audit row).
        tasks = [asyncio.create_task(self.listen_for_disconnect(receive)), asyncio.create_task(process_request())]
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
            if not tasks[1].cancelled() and tasks[1].exception() is None:
                tasks[1].result().close()
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
        if not tasks[1].cancelled():
            tasks[1].result().close()
        body_file.close()


api_application = ApiASGIHandler()
traced_api_application = with_trace_context(api_application)


async def _route(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and (scope["path"] == "/v1" or scope["path"].startswith("/v1/")):
        await traced_api_application(scope, receive, send)
    elif scope["type"] == "http" and scope["path"] in PROBE_PATHS:
        await probes(scope, receive, send)
    else:
        await console_application(scope, receive, send)


# The lifespan protocol starts each worker's background work (webhook outbox, tokenizers).
application = shutdown.waits_for_cuts(with_background_tasks(_route))
