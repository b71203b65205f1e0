"""uvicorn's httptools protocol with a deadline on a request's head (request line and headers).

uvicorn times nothing until a request's headers are complete: its keep-alive timer starts only
after a response, so a connection that sends its headers one byte every few seconds, or nothing
at all, stays open for ever, and a few hundred of them hold a worker's sockets and memory. Here
every request's head must arrive within `SYNAPSE_HEADER_READ_TIMEOUT` seconds of the connection
opening (or, on a kept-alive connection, of its first byte); otherwise the worker answers 408
and closes the connection. The body has its own bound (`SYNAPSE_BODY_READ_TIMEOUT`,
synapse/lean_asgi.py). No request exists yet at that point, so there is nothing to audit.

The one module that relies on uvicorn's protocol internals (`connection_made`,
`on_message_begin`, `on_headers_complete`, `connection_lost`, `loop`, `transport`, `cycle`);
synapse/tests/test_http_protocol.py checks each of them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 35\r\n"
    b"connection: close\r\n\r\n"
    b"The request headers came too slowly"
)


class HeadDeadlineProtocol(HttpToolsProtocol):
    head_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that sends nothing at all is a slow head too

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        # From the first byte (or the connection), not re-armed per byte: a trickle gains nothing.
        if self._head_deadline is None and self.head_timeout > 0:
            self._head_deadline = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        cycle: Any = self.cycle  # None until the connection's first request (uvicorn types it as set)
        if cycle is None or cycle.response_complete:
            # Not in the middle of answering an earlier (pipelined) request on this connection.
            self.transport.write(_TIMED_OUT)
        self.transport.close()


def head_deadline_protocol(seconds: float) -> type[HeadDeadlineProtocol]:
    """The protocol class a worker serves with, its deadline set (0: none)."""
    return type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_timeout": seconds})
