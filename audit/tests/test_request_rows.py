"""One row per /v1 request, refusals included, with who/what/decision and never the text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections

from audit.hashing import keyed_hash
from audit.models import AuditEvent
from routing.models import Backend
from teams.models import Classification
from teams.services import IssuedKey, api_key_issue, api_key_revoke
from tests.fakes.base import Reply
from tests.fakes.openai import FakeOpenAI
from tests.roles import OWNER_ALIAS, owner_db

from .helpers import CHAT, call, chat, read_stream, request_rows

pytestmark = pytest.mark.django_db

MESSAGE = "Summarise claim 42 for policy holder 078-05-1120"


@pytest.fixture(autouse=True)
def _fresh_upstream_client(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each in-process call runs in a new event loop; the worker's shared client binds to one.
    monkeypatch.setattr("routing.adapters.http._client", None)


def only_row() -> Any:
    [row] = request_rows()
    return row


def test_an_allowed_request_records_who_what_and_how(sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI) -> None:
    response = chat(sensitive_key.plaintext, MESSAGE, model="llama-3-8b")
    assert response.status_code == 200
    row = only_row()
    key = sensitive_key.api_key
    assert row.request_id == response["x-request-id"]
    assert (row.team_id, row.team_name, row.key_id, row.key_name) == (key.team_id, "claims", key.pk, "Claims summariser")
    assert (row.approved_by, row.classification, row.model, row.backend) == ("alice", "sensitive", "llama-3-8b", "local-vllm")
    assert (row.status, row.decision, row.endpoint, row.stream) == (200, "allowed", "chat.completions", False)
    assert row.prompt_tokens and row.completion_tokens and row.latency_ms > 0 and row.upstream_latency_ms is not None
    assert row.client_ip == "127.0.0.1"
    assert row.hash_key_id == "test1"
    assert row.prompt_hmac == keyed_hash(MESSAGE)
    assert row.response_hmac == keyed_hash(f"echo: {MESSAGE}")
    assert [a["backend"] for a in row.attempts] == ["local-vllm"]


def test_no_column_holds_the_prompt_or_the_answer(sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI) -> None:
    assert chat(sensitive_key.plaintext, MESSAGE, model="llama-3-8b").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM audit_auditevent")
        stored = repr(cursor.fetchall())
    assert "078-05-1120" not in stored and "claim 42" not in stored


@pytest.mark.parametrize(
    ("case", "status", "decision"),
    [
        ("unknown key", 401, "blocked_auth"),
        ("no key", 401, "blocked_auth"),
        ("model outside the allowlist", 403, "blocked_scope"),
        ("cloud model for a sensitive key", 403, "blocked_scope"),
        ("malformed body", 400, "invalid_request"),
        ("invalid json", 400, "invalid_request"),
        ("unknown route", 404, "invalid_request"),
        ("wrong method", 405, "invalid_request"),
        ("oversized body", 413, "invalid_request"),
        ("upstream failure", 502, "upstream_error"),
        ("upstream timeout", 504, "upstream_timeout"),
        ("revoked key", 401, "blocked_auth"),
        ("per-request limit", 400, "blocked_limit"),
        ("DLP block", 400, "blocked_dlp"),
    ],
)
def test_every_refusal_leaves_exactly_one_row(
    sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI, settings: Any, case: str, status: int, decision: str
) -> None:
    key = sensitive_key.plaintext
    if case == "unknown key":
        response = chat(key[:-4] + "AAAA")
    elif case == "no key":
        response = chat(None)
    elif case == "model outside the allowlist":
        response = chat(key, model="gpt-4o-mini")
    elif case == "cloud model for a sensitive key":
        Backend.objects.filter(name="local-vllm").update(location="cloud")
        response = chat(key, model="llama-3-8b")
    elif case == "malformed body":
        response = call("post", CHAT, key, {"model": "mock-small", "messages": []})
    elif case == "invalid json":
        response = call("post", CHAT, key, raw=b"{nope")
    elif case == "unknown route":
        response = call("get", "/v1/assistants", key)
    elif case == "wrong method":
        response = call("get", CHAT, key)
    elif case == "oversized body":
        settings.SYNAPSE = {**settings.SYNAPSE, "MAX_BODY_BYTES": 4000}
        response = chat(key, "x" * 5000)
    elif case == "upstream failure":
        onprem_upstream.fail_next(Reply(status=500, body={"error": {"message": "boom", "type": "server_error"}}), times=5)
        response = chat(key, model="llama-3-8b")
    elif case == "upstream timeout":
        Backend.objects.filter(name="local-vllm").update(timeout_seconds=0.3)
        onprem_upstream.fail_next(Reply(body={}, delay=1.0), times=5)
        response = chat(key, model="llama-3-8b")
    elif case == "revoked key":
        api_key_revoke(api_key=sensitive_key.api_key, reason="test")
        response = chat(key)
    elif case == "DLP block":
        response = chat(key, "deploy with AKIAZ7Q4MB2KXN5PLR3W please")  # the baseline pack blocks credentials
    else:
        limited = api_key_issue(
            team=sensitive_key.api_key.team,
            name="One message only",
            system_prompt="Be brief.",
            models=["mock-small"],
            classification=Classification.SENSITIVE,
            max_messages=1,
        )
        messages = [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]
        response = call("post", CHAT, limited.plaintext, {"model": "mock-small", "messages": messages})
    assert response.status_code == status
    row = only_row()
    assert (row.status, row.decision, row.request_id) == (status, decision, response["x-request-id"])
    assert row.decision_chain()[-1][1] == str(status)


# ── the audit write fails: nothing is served ──


def _refuse_audit_inserts(only: str | None = None) -> Iterator[None]:
    """The database refuses audit inserts (as a full disk or a lost primary would): every one, or
    those of one event type. Adding a trigger is the tables' owner's to do (tests/roles.py)."""
    with connections[OWNER_ALIAS].cursor() as cursor:
        if connection.vendor == "postgresql":
            condition = f"NEW.event_type = '{only}'" if only else "TRUE"
            cursor.execute(
                "CREATE FUNCTION test_audit_refuse() RETURNS trigger AS $$ BEGIN "
                f"IF {condition} THEN RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$ "
                "LANGUAGE plpgsql; CREATE TRIGGER test_audit_refuse BEFORE INSERT ON audit_auditevent "
                "FOR EACH ROW EXECUTE FUNCTION test_audit_refuse();"
            )
        else:
            when = f"WHEN NEW.event_type = '{only}' " if only else ""
            cursor.execute(
                f"CREATE TRIGGER test_audit_refuse BEFORE INSERT ON audit_auditevent {when}"
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END;"
            )
    yield
    with connections[OWNER_ALIAS].cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DROP TRIGGER test_audit_refuse ON audit_auditevent; DROP FUNCTION test_audit_refuse();")
        else:
            cursor.execute("DROP TRIGGER test_audit_refuse")


@pytest.fixture
def audit_writes_fail(sensitive_key: IssuedKey) -> Iterator[None]:
    """From now on the database refuses every audit insert."""
    yield from _refuse_audit_inserts()


@pytest.fixture
def closing_rows_fail(sensitive_key: IssuedKey) -> Iterator[None]:
    """A stream's opening row is written, its closing (`request`) row is refused."""
    yield from _refuse_audit_inserts(only="request")


@pytest.mark.sqlite
@owner_db
def test_an_answer_that_cannot_be_audited_is_not_served(audit_writes_fail: None, sensitive_key: IssuedKey) -> None:
    response = chat(sensitive_key.plaintext, "hello")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert b"Mock answer" not in response.content
    assert request_rows() == []


@pytest.mark.sqlite
@owner_db
def test_a_stream_whose_opening_row_cannot_be_written_is_refused_before_any_byte(
    audit_writes_fail: None, sensitive_key: IssuedKey
) -> None:
    response = chat(sensitive_key.plaintext, "hello", stream=True)
    assert response.status_code == 503
    assert response["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "service_unavailable"
    assert b"Mock answer" not in response.content
    assert not AuditEvent.objects.filter(request_id=response["x-request-id"]).exists()


@pytest.mark.sqlite
@owner_db
def test_a_stream_whose_closing_row_cannot_be_written_ends_in_an_error_not_done(
    closing_rows_fail: None, sensitive_key: IssuedKey
) -> None:
    response = chat(sensitive_key.plaintext, "hello", stream=True)
    body = read_stream(response)
    assert '"code":"service_unavailable"' in body
    assert "[DONE]" not in body
    [opened] = AuditEvent.objects.filter(request_id=response["x-request-id"])
    assert opened.event_type == "stream_opened"
