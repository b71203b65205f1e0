"""Bounded input (issue 14): hostile bodies get a 4xx in the door's shape, and every one its row.

Before: a body nested 1,000 levels deep was a 500 with no row, a lone surrogate in `model` or
`content` a 503 with no row, a NUL in `model` a "database outage" 503, and a 300 MB body was
read and spooled to disk before its 413.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync

from audit.models import AuditEvent
from conftest import Gateway, database_url_for_tests, start_gateway, stop_gateway
from synapse.lean_asgi import ApiASGIHandler
from teams.services import IssuedKey

DOORS = {
    "/v1/chat/completions": lambda e: e["error"]["code"],
    "/v1/responses": lambda e: e["error"]["code"],
    "/v1/messages": lambda e: e["error"]["type"],  # Anthropic's shape: {"type": "error", "error": {type, message}}
}
DEEP = b'{"model": "mock-small", "messages": [{"role": "user", "content": "x", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}]}"
SURROGATE_CONTENT = b'{"model": "mock-small", "max_tokens": 5, "messages": [{"role": "user", "content": "a\\ud800b"}]}'
SURROGATE_MODEL = b'{"model": "mock\\udfff", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}'


def lean(path: str, raw: bytes | Any, key: str | None) -> httpx.Response:
    """A request through the real /v1 handler (lean_asgi), not Django's test client."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=ApiASGIHandler())  # type: ignore[arg-type]  # Django types the scope dict, httpx MutableMapping
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            headers = {"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {})}
            return await client.post(path, content=raw, headers=headers)

    return async_to_sync(send)()


def only_row() -> AuditEvent:
    [row] = AuditEvent.objects.filter(event_type="request")
    return row


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", DOORS)
@pytest.mark.parametrize(
    ("raw", "code"),
    [(DEEP, "json_too_deep"), (SURROGATE_CONTENT, "invalid_unicode"), (SURROGATE_MODEL, "invalid_unicode")],
    ids=["1000-deep", "surrogate-in-content", "surrogate-in-model"],
)
def test_hostile_json_is_a_400_in_the_doors_shape_and_audited(sensitive_key: IssuedKey, path: str, raw: bytes, code: str) -> None:
    response = lean(path, raw, sensitive_key.plaintext)
    assert response.status_code == 400, response.text
    assert DOORS[path](response.json()) == (code if not path.endswith("messages") else "invalid_request_error")
    row = only_row()
    assert (row.status, row.decision, row.error_code, row.key_id) == (400, "invalid_request", code, sensitive_key.api_key.pk)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "raw", [DEEP, SURROGATE_CONTENT, SURROGATE_MODEL], ids=["1000-deep", "surrogate-content", "surrogate-model"]
)
def test_hostile_json_without_a_key_is_an_audited_401(routing: None, raw: bytes) -> None:
    # The auth-failure rule counts these rows: a key-less hostile body must leave one.
    assert lean("/v1/chat/completions", raw, None).status_code == 401
    assert (only_row().status, only_row().decision) == (401, "blocked_auth")


@pytest.mark.django_db(transaction=True)
def test_a_nul_in_model_is_a_400_not_a_database_outage(sensitive_key: IssuedKey) -> None:
    raw = json.dumps({"model": "mock-small\u0000", "messages": [{"role": "user", "content": "hi"}]}).encode()
    response = lean("/v1/chat/completions", raw, sensitive_key.plaintext)
    assert response.status_code == 400 and response.json()["error"]["param"] == "model"
    row = only_row()
    assert (row.status, row.model) == (400, "mock-small\\x00")


@pytest.mark.django_db(transaction=True)
def test_depth_64_is_served(sensitive_key: IssuedKey) -> None:
    nested = "[" * 62 + "]" * 62  # body object, metadata object: 64 in all
    raw = b'{"model": "mock-small", "messages": [{"role": "user", "content": "hi"}], "metadata": {"x": ' + nested.encode() + b"}}"
    assert lean("/v1/chat/completions", raw, sensitive_key.plaintext).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_is_refused_as_it_passes_the_limit(sensitive_key: IssuedKey, settings: Any) -> None:
    settings.SYNAPSE = {**settings.SYNAPSE, "MAX_BODY_BYTES": 10_000}
    pulled = 0

    async def chunks() -> Any:  # no Content-Length: the handler has to count
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield b"x" * 1000

    response = lean("/v1/chat/completions", chunks(), sensitive_key.plaintext)
    assert response.status_code == 413 and response.headers["connection"] == "close"
    assert pulled < 20  # httpx's transport hands over one chunk per receive(): the rest is never read
    assert (only_row().status, only_row().error_code) == (413, "request_too_large")


@pytest.mark.django_db(transaction=True)
def test_a_body_that_does_not_arrive_in_time_is_an_audited_408(sensitive_key: IssuedKey, settings: Any) -> None:
    settings.SYNAPSE = {**settings.SYNAPSE, "BODY_READ_TIMEOUT": 0.5}
    sent: list[dict[str, Any]] = []

    async def trickle() -> None:
        messages = [{"type": "http.request", "body": b'{"model": ', "more_body": True}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)  # the client never sends the rest
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {sensitive_key.plaintext}".encode())],
            "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
        }  # fmt: skip
        await asyncio.wait_for(ApiASGIHandler()(scope, receive, send), 10)

    async_to_sync(trickle)()
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["error"]["code"] == "request_timeout"
    assert (only_row().status, only_row().error_code) == (408, "request_timeout")


# ── the real server: bytes the client got to send before the refusal ─────────────────────

LIMIT = 1024 * 1024
UPLOAD = 300 * 1024 * 1024


@pytest.fixture(scope="module")
def small_body_gateway(django_db_setup, django_db_blocker) -> Iterator[Gateway]:
    with django_db_blocker.unblock():
        url = database_url_for_tests()
    server = start_gateway(database_url=url, workers=1, extra_env={"SYNAPSE_MAX_BODY_BYTES": str(LIMIT)})
    yield server
    stop_gateway(server)


def upload(base_url: str, key: str, *, chunked: bool) -> tuple[int, bytes]:
    """Push a 300 MB body as fast as the server takes it; the bytes sent when its answer came."""
    host, port = base_url.removeprefix("http://").split(":")
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {UPLOAD}"
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\n{length}\r\n\r\n"
    ).encode()
    block = b"x" * 65536
    piece = (b"%x\r\n" % len(block)) + block + b"\r\n" if chunked else block
    sock = socket.create_connection((host, int(port)))
    sock.sendall(head)
    sock.setblocking(False)
    sent, answer, deadline = 0, b"", time.monotonic() + 60
    try:
        while sent < UPLOAD and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                break
            if writable:
                try:
                    sent += sock.send(piece)
                except BlockingIOError:
                    continue
                except OSError:  # the server closed while we were still sending
                    break
        sock.setblocking(True)
        sock.settimeout(5)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    finally:
        sock.close()
    return sent, answer


@pytest.mark.django_db(transaction=True)
@pytest.mark.gateway
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_300_mb_upload_is_refused_after_at_most_the_limit(
    small_body_gateway: Gateway, sensitive_key: IssuedKey, chunked: bool
) -> None:
    sent, answer = upload(small_body_gateway.base_url, sensitive_key.plaintext, chunked=chunked)
    # What the client could push before the refusal: the limit (chunked only) plus what the
    # kernel's socket buffers and the server's flow-control window hold — never the 300 MB.
    assert sent < LIMIT + 16 * 1024 * 1024, sent
    if answer:  # the answer can be lost to the connection reset the unread rest causes
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    row = AuditEvent.objects.get(event_type="request")
    assert (row.status, row.error_code, row.key_id) == (413, "request_too_large", sensitive_key.api_key.pk)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", DOORS)
def test_a_host_off_allowed_hosts_is_a_400_in_the_doors_shape_and_audited(sensitive_key: IssuedKey, path: str) -> None:
    # Before: the lean /v1 handler skipped Django's host check and served any Host.
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=ApiASGIHandler())  # type: ignore[arg-type]  # Django types the scope dict, httpx MutableMapping
        async with httpx.AsyncClient(transport=transport, base_url="http://evil.example") as client:
            body = {"model": "mock-small", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
            return await client.post(path, json=body, headers={"authorization": f"Bearer {sensitive_key.plaintext}"})

    response = async_to_sync(send)()
    assert response.status_code == 400
    assert DOORS[path](response.json()) == ("invalid_host" if not path.endswith("messages") else "invalid_request_error")
    row = only_row()
    assert (row.status, row.error_code, row.decision) == (400, "invalid_host", "invalid_request")
