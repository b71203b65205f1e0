"""`audit_match`: was this exact text sent, when, by whom — found by its keyed hash alone."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from audit.models import AuditEvent, Decision
from audit.services import RequestRecord, audit_record_stream_opened
from teams.services import IssuedKey

from .helpers import chat, read_stream

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]

SECRET = "My SSN is 078-05-1120"


def match(*args: str) -> list[dict[str, object]]:
    out = StringIO()
    call_command("audit_match", *args, "--json", stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_it_finds_the_request_that_sent_the_text(sensitive_key: IssuedKey) -> None:
    response = chat(sensitive_key.plaintext, SECRET)
    chat(sensitive_key.plaintext, "something else")
    [found] = match("--text", SECRET)
    assert found["request_id"] == response["x-request-id"]
    assert (found["matched"], found["team"], found["use_case"]) == ("prompt", "claims", "Claims summariser")


def test_it_finds_an_answer_too(sensitive_key: IssuedKey) -> None:
    chat(sensitive_key.plaintext, "hi")
    [found] = match("--text", 'Mock answer from mock-small: you said "hi".')
    assert found["matched"] == "response"


def test_it_reads_the_text_from_a_file(sensitive_key: IssuedKey, tmp_path: Path) -> None:
    chat(sensitive_key.plaintext, SECRET)
    path = tmp_path / "text.txt"
    path.write_text(SECRET + "\n")
    assert match("--file", str(path)) == []  # exact text: the newline counts
    assert len(match("--file", str(path), "--strip")) == 1


def test_near_misses_do_not_match(sensitive_key: IssuedKey) -> None:
    chat(sensitive_key.plaintext, SECRET)
    out = StringIO()
    call_command("audit_match", "--text", SECRET.lower(), stdout=out)
    assert out.getvalue() == "0 matches\n"


def test_rows_hashed_before_a_key_rotation_are_still_found(sensitive_key: IssuedKey) -> None:
    chat(sensitive_key.plaintext, SECRET)
    with override_settings(AUDIT_HASH_KEY=("test2", b"the-new-key"), AUDIT_HASH_OLD_KEYS=[("test1", b"test-audit-hash-key")]):
        chat(sensitive_key.plaintext, SECRET)
        found = match("--text", SECRET)
    assert len(found) == 2
    assert sorted(AuditEvent.objects.filter(event_type="request").values_list("hash_key_id", flat=True)) == ["test1", "test2"]
    with override_settings(AUDIT_HASH_KEY=("test2", b"the-new-key"), AUDIT_HASH_OLD_KEYS=[]):
        assert len(match("--text", SECRET)) == 1


def test_a_stream_is_one_match_and_a_stream_never_closed_is_still_found(sensitive_key: IssuedKey) -> None:
    response = chat(sensitive_key.plaintext, SECRET, stream=True)
    read_stream(response)  # opened, then closed: two rows, one request
    lost = RequestRecord(
        request_id="req_worker_died", occurred_at=timezone.now(), endpoint="chat.completions", status=200,
        decision=Decision.ALLOWED, stream=True, prompt=SECRET,
    )  # fmt: skip
    audit_record_stream_opened(record=lost)  # its worker died before the closing row
    found = match("--text", SECRET)
    assert [(f["request_id"], f["matched"]) for f in found] == [
        (response["x-request-id"], "prompt"),
        ("req_worker_died", "prompt"),
    ]
