"""The console's body bound (synapse/console_body.py): refused before Django reads the body,
with the console's HTML page, never a 500; a body within it reaches the view whole."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from synapse.asgi import application

pytestmark = pytest.mark.django_db


class Call:
    """One ASGI request to the whole application, counting what the server pulled in."""

    def __init__(self, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> None:
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"localhost"), *headers],
            "client": ("127.0.0.1", 1234),
            "server": ("127.0.0.1", 8080),
        }
        self.chunks = list(chunks)
        self.read = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if not self.chunks:
            await asyncio.Event().wait()  # a client that stays: the handler cancels this wait when done
        chunk = self.chunks.pop(0)
        self.read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def run(self) -> tuple[int, dict[bytes, bytes], bytes]:
        async_to_sync(application)(self.scope, self.receive, self.send)
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
        return start["status"], dict(start["headers"]), body


@pytest.fixture
def small_limit(settings: Any) -> int:
    settings.SYNAPSE = {**settings.SYNAPSE, "CONSOLE_MAX_BODY_BYTES": 1_000}
    return 1_000


def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read(small_limit: int) -> None:
    call = Call("/admin/login/", [b"x" * 600] * 5, [(b"content-length", b"3000")])
    status, headers, body = call.run()
    assert status == 413 and call.read == 0
    assert headers[b"content-type"].startswith(b"text/html") and headers[b"connection"] == b"close"
    assert b"Request too large" in body and b"at most 1000 bytes" in body


def test_a_chunked_body_is_stopped_as_soon_as_it_passes_the_limit(small_limit: int) -> None:
    call = Call("/admin/login/", [b"x" * 600] * 50, [])  # 30 kB, no Content-Length
    status, _, body = call.run()
    assert status == 413 and call.read == 1_200 and b"<html" in body


def test_a_body_within_the_limit_reaches_the_console(small_limit: int) -> None:
    form = b"username=nobody&password=wrong-password"
    call = Call(
        "/admin/login/",
        [form[:10], form[10:]],
        [(b"content-type", b"application/x-www-form-urlencoded"), (b"content-length", str(len(form)).encode())],
    )
    status, _, _ = call.run()
    assert status == 403  # the login view read the form; CSRF refuses it (no token), as for any browser-less post


def test_the_api_keeps_its_own_larger_bound(sensitive_key: Any, small_limit: int) -> None:
    # /v1 is not the console: its body is bounded by SYNAPSE_MAX_BODY_BYTES, not the console's.
    import json

    payload = json.dumps({"model": "mock-small", "messages": [{"role": "user", "content": "x" * 5_000}]}).encode()
    call = Call(
        "/v1/chat/completions",
        [payload],
        [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"authorization", f"Bearer {sensitive_key.plaintext}".encode()),
        ],
    )
    status, _, _ = call.run()
    assert status == 200
