"""The console's request bodies, bounded before Django sees them.

Django's ASGI handler reads a whole body into a spooled temporary file (to disk past 2.5 MB)
before any view or size setting can refuse it, so a 300 MB POST to /admin/ would be written to
disk first. This wrapper, around the console's handler only (`/v1` and `/mcp` have their own,
synapse/lean_asgi.py), refuses a declared `Content-Length` over `SYNAPSE_CONSOLE_MAX_BODY_BYTES`
before reading a byte, stops a chunked body as soon as it passes the limit, and gives a body
`SYNAPSE_BODY_READ_TIMEOUT` seconds to arrive; each refusal is the console's HTML error page
(413 or 408), with the connection closed. A body within the limit is handed to Django in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.template import loader

logger = logging.getLogger("synapse.console")

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def _page(status: int, title: str, message: str) -> bytes:
    html = loader.get_template("console/error.html").render(
        {"status": status, "title": title, "message": message, "request_id": "", "home": "/admin/"}
    )
    return html.encode()


async def _refuse(send: Any, status: int, title: str, message: str) -> None:
    body = _page(status, title, message)
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is not read
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _too_large(limit: int) -> tuple[int, str, str]:
    return 413, "Request too large", f"The console accepts at most {limit} bytes per request; nothing was saved."


def bounded_console_body(app: App) -> App:
    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        limit, seconds = settings.SYNAPSE["CONSOLE_MAX_BODY_BYTES"], settings.SYNAPSE["BODY_READ_TIMEOUT"]
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.strip().isdigit() and int(declared) > limit:
            logger.warning("console request to %s refused: Content-Length %s over %s", scope.get("path"), int(declared), limit)
            await _refuse(send, *_too_large(limit))
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        logger.warning("console request to %s refused: body over %s bytes", scope.get("path"), limit)
                        await _refuse(send, *_too_large(limit))
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await _refuse(send, 408, "Request too slow", f"The request did not arrive within {seconds:g} seconds.")
            return

        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # from here on only the disconnect

        await app(scope, replay, send)

    return application
