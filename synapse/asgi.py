"""ASGI entry point: what gunicorn's uvicorn workers serve.

Two Django handlers share one process. The console (admin, static) gets the full stack; `/v1`
gets a lean one. On an async request every sync `MiddlewareMixin` (session, CSRF, auth,
messages), each request signal and the error-response logger costs a thread hop; on these
machines that added ~10 ms per request — more than the whole governance pipeline — and none
of it means anything to a bearer-token API. The pipeline returns its database connections to
the pool itself (`synapse.db.run_db`) and audits every request, errors included.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synapse.settings")

console_application = get_asgi_application()  # also runs django.setup()

from . import shutdown  # noqa: E402
from .console_body import bounded_console_body  # noqa: E402
from .lean_asgi import ApiASGIHandler  # noqa: E402
from .lifespan import with_background_tasks  # noqa: E402
from .probes import PATHS as PROBE_PATHS  # noqa: E402
from .probes import probes  # noqa: E402
from .tracing import with_trace_context  # noqa: E402

api_application = ApiASGIHandler()
traced_api_application = with_trace_context(api_application)
bounded_console_application = bounded_console_body(console_application)


async def _route(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and (scope["path"] in ("/v1", "/mcp") or scope["path"].startswith("/v1/")):
        await traced_api_application(scope, receive, send)
    elif scope["type"] == "http" and scope["path"] in PROBE_PATHS:
        await probes(scope, receive, send)
    else:
        await bounded_console_application(scope, receive, send)


# The lifespan protocol starts each worker's background work (webhook outbox, tokenizers).
application = shutdown.waits_for_cuts(with_background_tasks(_route))
