"""Checkpoints catch what the chain alone cannot: a rewrite by someone who controls the table."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from audit.chain import CHAINED_FIELDS, GENESIS, chain_hash, content_digest
from audit.models import AuditEvent, EventType
from audit.services import audit_governance_event
from tests.roles import owner_db

from .helpers import as_superuser

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def events(n: int) -> None:
    for i in range(n):
        audit_governance_event(event_type=EventType.ROUTING_CHANGED, actor_name=f"op{i}")


def checkpoint(tmp_path: Path) -> Path:
    out = StringIO()
    call_command("audit_checkpoint", stdout=out)
    path = tmp_path / "checkpoint.jsonl"
    path.write_text(out.getvalue())
    return path


def verify(*args: str) -> str:
    out = StringIO()
    try:
        call_command("verify_audit", *args, stdout=out)
    except CommandError as exc:
        return f"error: {exc}"
    return out.getvalue().strip()


def rewrite_history(seq: int, actor: str) -> None:
    """A superuser's rewrite: change one row, then recompute every hash after it."""
    rows = list(AuditEvent.objects.order_by("seq").values("seq", *CHAINED_FIELDS))
    prev_hash = GENESIS
    for row in rows:
        if row["seq"] == seq:
            row["actor"] = actor
        row_hash = chain_hash(prev_hash=prev_hash, seq=row["seq"], digest=content_digest(row))
        as_superuser(
            "UPDATE audit_auditevent SET actor = %s, prev_hash = %s, row_hash = %s WHERE seq = %s",
            [row["actor"], prev_hash, row_hash, row["seq"]],
        )
        prev_hash = row_hash


def test_it_prints_the_signed_head(tmp_path: Path) -> None:
    events(3)
    data = json.loads(checkpoint(tmp_path).read_text())
    head = AuditEvent.objects.get(seq=3)
    assert (data["seq"], data["head"], data["key_id"]) == (3, head.row_hash, "test1-cp")
    assert len(data["signature"]) == 64


def test_the_log_extends_its_checkpoint_as_it_grows(tmp_path: Path) -> None:
    events(3)
    path = checkpoint(tmp_path)
    events(2)
    head = AuditEvent.objects.get(seq=5).row_hash
    assert verify("--checkpoint", str(path)) == f"ok: 5 events, head {head}, extends checkpoint at seq 3"


@owner_db
def test_a_rewritten_table_passes_the_chain_but_not_the_checkpoint(tmp_path: Path) -> None:
    events(4)
    path = checkpoint(tmp_path)
    rewrite_history(2, "mallory")
    assert verify().startswith("ok: 4 events")  # internally consistent again: why checkpoints exist
    message = verify("--checkpoint", str(path))
    assert message.startswith("error: FAILED at seq 4 ")  # the checkpoint's row
    assert "differs from the checkpoint" in message


@owner_db
def test_rows_removed_from_the_end_are_caught_by_the_checkpoint(tmp_path: Path) -> None:
    events(4)
    path = checkpoint(tmp_path)
    as_superuser("DELETE FROM audit_auditevent WHERE seq > 2")
    assert verify().startswith("ok: 2 events")
    assert verify("--checkpoint", str(path)) == (
        "error: FAILED at seq 3: the log ends at seq 2 but the checkpoint covers seq 4: rows were removed"
    )


def test_a_forged_checkpoint_is_refused(tmp_path: Path) -> None:
    events(2)
    path = checkpoint(tmp_path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "seq": 1}))
    assert "signature does not match" in verify("--checkpoint", str(path))


def test_a_checkpoint_signed_with_another_key_is_refused(tmp_path: Path) -> None:
    events(1)
    path = checkpoint(tmp_path)
    with override_settings(AUDIT_CHECKPOINT_KEY=("other", b"another-secret")):
        assert "signed with key 'test1-cp'" in verify("--checkpoint", str(path))


@pytest.fixture
def checkpoint_store() -> Iterator[dict[str, Any]]:
    received: dict[str, Any] = {"status": 201}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received["body"] = json.loads(self.rfile.read(int(self.headers["content-length"])))
            received["authorization"] = self.headers.get("authorization")
            self.send_response(received["status"])
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    received["url"] = f"http://127.0.0.1:{server.server_address[1]}/checkpoints"
    yield received
    server.shutdown()
    server.server_close()


def test_it_posts_the_checkpoint_to_the_configured_store(checkpoint_store: dict[str, Any]) -> None:
    events(2)
    out = StringIO()
    with override_settings(AUDIT_CHECKPOINT_URL=checkpoint_store["url"], AUDIT_CHECKPOINT_TOKEN="s3cret"):
        call_command("audit_checkpoint", "--post", stdout=out, stderr=StringIO())
    assert checkpoint_store["body"] == json.loads(out.getvalue())
    assert checkpoint_store["body"]["seq"] == 2
    assert checkpoint_store["authorization"] == "Bearer s3cret"


def test_a_store_that_refuses_the_checkpoint_is_an_error(checkpoint_store: dict[str, Any]) -> None:
    checkpoint_store["status"] = 500
    with pytest.raises(CommandError, match="answered 500"):
        call_command("audit_checkpoint", "--url", checkpoint_store["url"], stdout=StringIO())
