"""A stream's two rows: `stream_opened` committed before its first byte, its `request` row when it
ends — whichever way it ends — and `verify_audit` telling a stream that never closed from a
broken chain."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.management import call_command
from django.test import AsyncClient
from django.utils import timezone

from audit.hashing import keyed_hash
from audit.models import AuditEvent, Decision
from audit.selectors import audit_chain_verify, audit_streams_unclosed
from audit.services import RequestRecord, audit_record_request, audit_record_stream_opened
from dlp.services import pack_apply
from teams.models import Classification
from teams.services import IssuedKey, api_key_issue
from tests.fakes.base import Received
from tests.fakes.openai import FakeOpenAI

from .helpers import chat, read_stream

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]

AWS_KEY = "AKIAZ7Q4MB2KXN5PLR3W"


@pytest.fixture(autouse=True)
def _fresh_upstream_client(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each in-process call runs in a new event loop; the worker's shared client binds to one.
    monkeypatch.setattr("routing.adapters.http._client", None)


def streamed(path: str, key: str, body: dict[str, Any]) -> tuple[Any, list[AuditEvent], str]:
    """Call, note the request's rows once the response has started but before its body is read,
    then read the body — in one event loop, as a server would (the upstream's connection is bound
    to the loop it was opened in)."""

    async def run() -> tuple[Any, list[AuditEvent], str]:
        response: Any = await AsyncClient().post(
            path, data=json.dumps(body), content_type="application/json", headers={"authorization": f"Bearer {key}"}
        )
        before = await sync_to_async(rows_of)(response["x-request-id"])
        if not response.streaming:
            return response, before, response.content.decode()
        return response, before, b"".join([part async for part in response.streaming_content]).decode()

    return async_to_sync(run)()


def chat_stream(key: str, content: str, **extra: Any) -> tuple[Any, list[AuditEvent], str]:
    body = {"model": "llama-3-8b", "stream": True, "messages": [{"role": "user", "content": content}], **extra}
    return streamed("/v1/chat/completions", key, body)


def rows_of(request_id: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(request_id=request_id).order_by("seq"))


def assert_opened_then_closed(request_id: str) -> AuditEvent:
    """Exactly two rows, the opening one first; the closing one points at it. Returns the closing row."""
    opened, closing = rows_of(request_id)
    assert (opened.event_type, closing.event_type) == ("stream_opened", "request")
    assert opened.seq < closing.seq
    assert closing.detail["stream_opened_seq"] == opened.seq
    assert opened.stream and closing.stream
    # The opening row says who and what, never an answer.
    assert (opened.key_id, opened.team_id, opened.model, opened.backend) == (
        closing.key_id,
        closing.team_id,
        closing.model,
        closing.backend,
    )
    assert opened.prompt_hmac == closing.prompt_hmac != ""
    assert (opened.response_hmac, opened.completion_tokens, opened.cost) == ("", None, None)
    assert audit_chain_verify().ok
    assert audit_streams_unclosed() == []
    return closing


def test_a_complete_stream_is_opened_before_its_first_byte_and_closed_after_its_last(
    sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    response, before, body = chat_stream(sensitive_key.plaintext, "hello there")
    request_id = response["x-request-id"]
    # The response exists, its body not yet read: the opening row is already committed.
    [opened] = before
    assert (opened.event_type, opened.decision, opened.status, opened.endpoint) == (
        "stream_opened",
        "allowed",
        200,
        "chat.completions",
    )
    assert (opened.key_name, opened.approved_by, opened.classification) == ("Claims summariser", "alice", "sensitive")
    assert opened.prompt_hmac == keyed_hash("hello there")
    assert "[DONE]" in body
    closing = assert_opened_then_closed(request_id)
    assert (closing.decision, closing.status) == ("allowed", 200)
    assert closing.response_hmac == keyed_hash("echo: hello there")


def test_a_stream_blocked_by_output_dlp_is_closed_by_its_refusal(sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI) -> None:
    pack_apply(name_or_path="baseline")
    onprem_upstream.pieces = ["Use the key ", AWS_KEY[:9], AWS_KEY[9:], " to deploy."]
    response, _, body = chat_stream(sensitive_key.plaintext, "how do I deploy?")
    assert AWS_KEY[:9] not in body and "[DONE]" not in body
    closing = assert_opened_then_closed(response["x-request-id"])
    assert (closing.decision, closing.status) == ("blocked_dlp", 422)


def test_a_stream_cut_past_its_reservation_is_closed_by_the_cut(sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI) -> None:
    limited = api_key_issue(
        team=sensitive_key.api_key.team,
        name="Token limited",
        system_prompt="Be brief.",
        models=["llama-3-8b"],
        classification=Classification.SENSITIVE,
        tpm=1_000_000,
    )
    onprem_upstream.reply = " ".join(["w"] * 200)  # ignores the cap it is sent
    response, _, body = chat_stream(limited.plaintext, "talk", max_tokens=5)
    assert "upstream_over_reservation" in body and "[DONE]" not in body
    closing = assert_opened_then_closed(response["x-request-id"])
    assert (closing.decision, closing.error_code) == ("upstream_error", "upstream_over_reservation")


def test_a_stream_whose_upstream_fails_midway_is_closed_by_the_failure(
    sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    messages = [{"role": "user", "content": "a b c d e f"}]
    body = {"model": "x", "stream": True, "stream_options": {"include_usage": True}, "messages": messages}
    reply = onprem_upstream.respond(Received("POST", "/v1/chat/completions", {}, {}, body))
    reply.drop_after = 3  # the upstream's connection closes mid-answer
    onprem_upstream.fail_next(reply)
    response, _, text = chat_stream(sensitive_key.plaintext, "a b c d e f")
    assert response.status_code == 200
    assert '"error"' in text and "[DONE]" not in text
    closing = assert_opened_then_closed(response["x-request-id"])
    assert closing.decision == "upstream_error"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/messages", {"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/responses", {"input": "hi"}),
    ],
)
def test_the_messages_and_responses_doors_open_their_streams_too(
    sensitive_key: IssuedKey, path: str, body: dict[str, Any]
) -> None:
    response, [opened], _ = streamed(path, sensitive_key.plaintext, {"model": "mock-small", "stream": True, **body})
    assert response.status_code == 200
    assert opened.event_type == "stream_opened"
    assert opened.endpoint == path.removeprefix("/v1/")
    closing = assert_opened_then_closed(response["x-request-id"])
    assert (closing.decision, closing.status) == ("allowed", 200)


def test_a_refused_stream_request_has_no_opening_row(sensitive_key: IssuedKey) -> None:
    response, _, _ = chat_stream(sensitive_key.plaintext, "hi", model="gpt-4o-mini")  # outside the allowlist
    assert response.status_code == 403
    [row] = rows_of(response["x-request-id"])
    assert row.event_type == "request"


# ── verify_audit ──


def _opened(request_id: str, minutes_ago: float) -> None:
    record = RequestRecord(
        request_id=request_id,
        occurred_at=timezone.now() - timedelta(minutes=minutes_ago),
        endpoint="chat.completions",
        status=200,
        decision=Decision.ALLOWED,
        stream=True,
        prompt="hi",
    )
    audit_record_stream_opened(record=record)


def verify(*args: str) -> str:
    out = StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def test_verify_audit_lists_streams_opened_and_never_closed_apart_from_the_chain() -> None:
    _opened("req_lost_1", minutes_ago=60)
    _opened("req_closed", minutes_ago=30)
    closing = RequestRecord(
        request_id="req_closed", occurred_at=timezone.now(), endpoint="chat.completions", status=200, decision=Decision.ALLOWED
    )
    audit_record_request(record=closing)
    _opened("req_lost_2", minutes_ago=20)
    _opened("req_running", minutes_ago=1)

    lines = verify().splitlines()
    assert lines[0].startswith("ok: 5 events")
    assert lines[1] == (
        "2 stream(s) opened and never closed (the worker died mid-stream; each has its stream_opened row, "
        "no request row): request ids req_lost_1, req_lost_2"
    )
    assert lines[2] == (
        "1 stream(s) opened in the last 15 minutes and not closed yet (possibly still running): request ids req_running"
    )
    report = json.loads(verify("--json", "--running-minutes", "0"))
    assert report["ok"] is True and report["failure"] is None
    assert [s["request_id"] for s in report["streams_never_closed"]] == ["req_lost_1", "req_lost_2", "req_running"]
    assert report["streams_maybe_running"] == []


def test_verify_audit_says_nothing_of_streams_when_all_closed(sensitive_key: IssuedKey) -> None:
    read_stream(chat(sensitive_key.plaintext, stream=True))
    output = verify()
    assert output.startswith("ok: ") and len(output.splitlines()) == 1
