"""A real HTTP server for fake LLM providers: records what it received, replies as scripted.

Each provider fake subclasses `FakeProvider` and implements `respond()` in that provider's
exact wire format. The server runs in a thread of the test process; the gateway under test
(in its own worker processes) reaches it over loopback like any real backend.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes] | None = None  # streamed (SSE) instead of `body`
    delay: float = 0.0  # seconds before answering
    chunk_delay: float = 0.0
    drop_after: int | None = None  # close the connection after this many chunks


class FakeProvider:
    """Override `respond`; use `fail_next` to script errors for the next N requests."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._scripted: list[Reply] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ── control ──
    def start(self) -> str:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                parts = urlsplit(self.path)
                received = Received(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with provider._lock:
                    provider.received.append(received)
                    reply = provider._scripted.pop(0) if provider._scripted else None
                if reply is None:
                    reply = provider.respond(received)
                provider._send(self, reply)

            do_POST = _handle  # noqa: N815 - stdlib naming
            do_GET = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, reply: Reply, times: int = 1) -> None:
        with self._lock:
            self._scripted.extend([reply] * times)

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
            self._scripted.clear()

    # ── to implement ──
    def respond(self, received: Received) -> Reply:
        raise AssertionError(f"{type(self).__name__} has no route for {received.method} {received.path}")

    # ── plumbing ──
    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        try:
            if reply.chunks is None:
                payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                handler.send_response(reply.status)
                handler.send_header("content-type", reply.headers.get("content-type", "application/json"))
                for name, value in reply.headers.items():
                    if name.lower() != "content-type":
                        handler.send_header(name, value)
                handler.send_header("content-length", str(len(payload)))
                handler.end_headers()
                handler.wfile.write(payload)
                return
            handler.send_response(reply.status)
            handler.send_header("content-type", reply.headers.get("content-type", "text/event-stream"))
            for name, value in reply.headers.items():
                if name.lower() != "content-type":
                    handler.send_header(name, value)
            handler.send_header("transfer-encoding", "chunked")
            handler.end_headers()
            for index, chunk in enumerate(reply.chunks):
                if reply.drop_after is not None and index >= reply.drop_after:
                    handler.close_connection = True
                    handler.wfile.flush()
                    handler.connection.shutdown(2)
                    return
                handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                handler.wfile.flush()
                if reply.chunk_delay:
                    time.sleep(reply.chunk_delay)
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the gateway went away first (e.g. its client disconnected)


def sse_lines(events: Iterator[tuple[str | None, str]]) -> Iterator[bytes]:
    """Encode (event name or None, data) pairs as SSE frames."""
    for event, data in events:
        frame = f"event: {event}\n" if event else ""
        yield (frame + f"data: {data}\n\n").encode()
