"""A real webhook receiver for the tests: an HTTP server on a thread that records every POST.

It answers 500 to the first `fail_first` requests and 200 afterwards, and verifies each
request the way a receiver in any language would, from the documented header alone.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.waiting import wait_until


@dataclass(frozen=True, slots=True)
class Received:
    headers: dict[str, str]  # lower-cased names
    body: bytes
    answered: int


def signature_valid(*, secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """Synapse-Signature: t=<unix seconds>,v1=<hex HMAC-SHA-256(secret, "<t>." + raw body)>."""
    fields = dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part)
    if not fields.get("t", "").isdigit() or abs(time.time() - int(fields["t"])) > tolerance:
        return False
    expected = hmac.new(secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))


class Receiver:
    def __init__(self, *, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    status = 500 if len(receiver.received) < receiver.fail_first else 200
                    receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"try again")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return None  # keep the test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an IPv4 server's address
        return f"http://{host}:{port}/hooks/synapse"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.answered == 200]

    def wait_for(self, count: int, *, deadline_seconds: float = 20.0) -> list[Received]:
        """Wait until `count` requests were accepted (a deadline, not a timed assertion)."""
        wait_until(lambda: len(self.accepted()) >= count, timeout=deadline_seconds)
        return self.accepted()
