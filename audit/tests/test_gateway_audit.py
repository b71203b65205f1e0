"""Through the real server: a stream the client cuts still leaves its row, and a gateway that
loses its database fails closed (NIST AU-5) — 503, nothing forwarded, nothing served."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.db import connection

from audit.models import AuditEvent
from conftest import Gateway, start_gateway, stop_gateway
from teams.services import IssuedKey
from tests.fakes.base import Received, Reply
from tests.fakes.openai import FakeOpenAI
from tests.waiting import stays_true, wait_until

from .dblink import DatabaseLink

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

BODY = {"model": "llama-3-8b", "messages": [{"role": "user", "content": "hello"}]}


def request_rows(request_id: str | None = None) -> list[AuditEvent]:
    rows = AuditEvent.objects.filter(event_type="request").order_by("seq")
    return list(rows.filter(request_id=request_id) if request_id is not None else rows)


def wait_for_rows(n: int, timeout: float = 10.0, request_id: str | None = None) -> list[AuditEvent]:
    # The gateway writes the row of a cut stream after the client has gone: wait for it.
    wait_until(lambda: len(request_rows(request_id)) >= n, timeout=timeout)
    return request_rows(request_id)


def upstream_reply(upstream: FakeOpenAI, body: dict[str, Any]) -> Reply:
    """What the fake would answer to this body, so a test can slow it down."""
    return upstream.respond(Received("POST", "/v1/chat/completions", {}, {}, body))


def post(gateway: Gateway, key: str, body: dict[str, Any], timeout: float = 30.0) -> httpx.Response:
    return httpx.post(f"{gateway.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=timeout)


def test_it_leaves_the_row_of_a_stream_cut_by_the_client(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    words = " ".join(f"word{i}" for i in range(40))
    body = {**BODY, "messages": [{"role": "user", "content": words}], "stream": True}
    slow = onprem_upstream.respond(
        Received("POST", "/v1/chat/completions", {}, {}, {**body, "stream_options": {"include_usage": True}})
    )
    slow.chunk_delay = 0.2  # ~8 s in all: the client leaves long before the end
    onprem_upstream.fail_next(slow)
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST", f"{gateway.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {sensitive_key.plaintext}"}
        ) as response,
    ):
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        next(response.iter_bytes())  # the first chunk arrives, then the client hangs up
    # The rows of this request only: when this test is the session's first to use the server,
    # the server's readiness probe (a keyless 401) has left its own row too.
    [row] = wait_for_rows(1, request_id=request_id)
    assert (row.request_id, row.decision, row.status, row.stream) == (request_id, "client_disconnected", 499, True)
    assert row.backend == "local-vllm"
    # Exactly one closing row, not one per path that noticed; a second would follow within moments.
    assert stays_true(lambda: len(request_rows(request_id=request_id)) == 1, seconds=0.5)
    # After the row that opened the stream before its first byte.
    opened = AuditEvent.objects.get(request_id=request_id, event_type="stream_opened")
    assert opened.seq < row.seq and row.detail["stream_opened_seq"] == opened.seq


# ── a gateway whose database goes away ──


@pytest.fixture
def link() -> Iterator[DatabaseLink]:
    if connection.vendor != "postgresql":
        pytest.skip("cuts a TCP link to PostgreSQL")
    settings = connection.settings_dict
    link = DatabaseLink(settings.get("HOST") or "127.0.0.1", int(settings.get("PORT") or 5432))
    yield link
    link.cut()


@pytest.fixture
def linked_gateway(link: DatabaseLink, sensitive_key: IssuedKey) -> Iterator[Gateway]:
    settings = connection.settings_dict
    url = f"postgres://{settings.get('USER') or 'postgres'}@127.0.0.1:{link.port}/{settings['NAME']}"
    # A short pool timeout so a dead database is answered in seconds, not the default ten.
    server = start_gateway(database_url=url, workers=1, extra_env={"SYNAPSE_DB_POOL_TIMEOUT": "2"})
    yield server
    stop_gateway(server)


def test_with_the_database_gone_nothing_is_forwarded(
    linked_gateway: Gateway, link: DatabaseLink, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    assert post(linked_gateway, sensitive_key.plaintext, BODY).status_code == 200
    assert len(onprem_upstream.received) == 1
    link.cut()
    response = post(linked_gateway, sensitive_key.plaintext, BODY)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response.headers["retry-after"] == "1"
    assert len(onprem_upstream.received) == 1  # the upstream never saw the second request


def test_it_does_not_serve_an_answer_whose_row_cannot_be_written(
    linked_gateway: Gateway, link: DatabaseLink, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    before = request_rows()  # the server's readiness probe (a keyless 401) has its row already
    slow = upstream_reply(onprem_upstream, BODY)
    slow.delay = 1.0
    onprem_upstream.fail_next(slow)
    answer: dict[str, httpx.Response] = {}
    caller = threading.Thread(target=lambda: answer.setdefault("r", post(linked_gateway, sensitive_key.plaintext, BODY)))
    caller.start()
    assert wait_until(lambda: onprem_upstream.received, timeout=10, interval=0.01)
    link.cut()  # the upstream is answering; the audit write that follows cannot happen
    caller.join(timeout=30)
    response = answer["r"]
    assert response.status_code == 503
    assert b"echo" not in response.content
    assert request_rows() == before
