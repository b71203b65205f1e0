"""The chain: rows link in order, the database refuses edits, and verification finds tampering."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone

from audit.chain import CHAINED_FIELDS, GENESIS, chain_hash, content_digest
from audit.models import AuditEvent, EventType
from audit.selectors import audit_chain_verify
from audit.services import audit_event_append, audit_governance_event
from tests.roles import OWNER_ALIAS, owner_db

from .helpers import as_superuser

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def events(n: int) -> list[AuditEvent]:
    return [audit_governance_event(event_type=EventType.ROUTING_CHANGED, actor_name=f"op{i}", detail={"i": i}) for i in range(n)]


def verify() -> str:
    try:
        call_command("verify_audit", stdout=(out := _Out()))
    except CommandError as exc:
        assert exc.returncode == 1
        return str(exc)
    return out.text


class _Out:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_it_links_each_row_to_the_one_before() -> None:
    rows = events(3)
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == GENESIS
    assert [r.prev_hash for r in rows[1:]] == [r.row_hash for r in rows[:-1]]
    # What the insert returned is what was stored (on PostgreSQL the trigger assigned it).
    stored = list(AuditEvent.objects.order_by("seq").values_list("seq", "prev_hash", "row_hash"))
    assert stored == [(r.seq, r.prev_hash, r.row_hash) for r in rows]
    first = AuditEvent.objects.values(*CHAINED_FIELDS).get(seq=1)
    assert rows[0].row_hash == chain_hash(prev_hash=GENESIS, seq=1, digest=content_digest(first))
    assert verify() == f"ok: 3 events, head {rows[-1].row_hash}\n"


def test_an_empty_log_verifies() -> None:
    assert verify() == f"ok: 0 events, head {GENESIS}\n"


def test_every_column_is_covered_by_the_hash() -> None:
    columns = {f.name for f in AuditEvent._meta.concrete_fields} - {"id", "seq", "prev_hash", "row_hash"}
    assert set(CHAINED_FIELDS) == columns


def test_what_is_hashed_is_what_the_database_gives_back() -> None:
    # Values the database stores differently from how Python holds them still verify.
    audit_event_append(
        values={
            "occurred_at": timezone.now(),
            "event_type": "request",
            "model": "m\x00" + "x" * 500,  # NUL and over-long client input
            "client_ip": "::ffff:10.0.0.1",  # printed differently by PostgreSQL's inet
            "cost": Decimal("0.000000125"),  # more places than the column keeps
            "latency_ms": 1e-5,
            "attempts": [{"backend": "b", "latency_ms": 12.0, "status": None}],
            "detail": {"nested": {"z": 1, "a": [1.5, "\x00"]}, "when": timezone.now()},
        }
    )
    row = AuditEvent.objects.get()
    assert row.model == "m" + "x" * 127 and row.cost == Decimal("0.00000013")
    assert verify().startswith("ok: 1 events")


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET actor = 'mallory'",
        "DELETE FROM audit_auditevent WHERE seq = 1",
        "DELETE FROM audit_auditevent",  # SQLite's TRUNCATE
    ],
)
@owner_db  # the triggers bind even the owner; the serving role lacks the privilege (test_db_roles)
def test_the_database_refuses_updates_and_deletes(sql: str) -> None:
    events(2)
    owner = connections[OWNER_ALIAS]
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(using=OWNER_ALIAS), owner.cursor() as cursor:
        cursor.execute(sql)
    assert AuditEvent.objects.count() == 2


@owner_db
def test_the_orm_cannot_edit_or_delete_either() -> None:
    [row] = events(1)
    row.actor = "mallory"
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(using=OWNER_ALIAS):
        row.save(using=OWNER_ALIAS)
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(using=OWNER_ALIAS):
        AuditEvent.objects.using(OWNER_ALIAS).all().delete()


@owner_db
def test_postgresql_refuses_truncate() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no TRUNCATE; DELETE without WHERE is covered above")
    events(1)
    with (
        pytest.raises(IntegrityError, match="append-only; TRUNCATE is refused"),
        transaction.atomic(using=OWNER_ALIAS),
        connections[OWNER_ALIAS].cursor() as cursor,
    ):
        cursor.execute("TRUNCATE audit_auditevent")


def test_a_writer_cannot_choose_its_place_in_the_chain() -> None:
    events(2)
    head = AuditEvent.objects.get(seq=2)
    forged = {name: getattr(head, name) for name in CHAINED_FIELDS}
    claims = {"seq": 2, "prev_hash": GENESIS, "row_hash": "0" * 64}  # a position and parent of its own choosing
    if connection.vendor == "sqlite":
        with pytest.raises(IntegrityError, match="must extend the chain head"), transaction.atomic():
            AuditEvent.objects.create(**forged, **claims)
        assert AuditEvent.objects.count() == 2
        return
    # PostgreSQL's trigger overrides the claims and links the row to the head; the digest it
    # was given does not match its content, which verification reports.
    row = AuditEvent.objects.create(**forged, **claims)
    assert (row.seq, row.prev_hash) == (3, head.row_hash)
    assert verify().startswith("FAILED at seq 3 ")


@owner_db
def test_a_row_altered_behind_the_triggers_is_reported_at_that_row() -> None:
    events(5)
    as_superuser("UPDATE audit_auditevent SET actor = 'mallory' WHERE seq = 3")
    message = verify()
    assert message.startswith("FAILED at seq 3 ")
    assert "content does not match its row_hash" in message


@owner_db
def test_a_deleted_row_is_detected() -> None:
    events(5)
    as_superuser("DELETE FROM audit_auditevent WHERE seq = 2")
    message = verify()
    assert message.startswith("FAILED at seq 3 ")
    assert "(seq 2) are missing" in message


@owner_db
def test_a_row_rewritten_with_a_fresh_hash_is_caught_at_the_next_row() -> None:
    events(4)
    row = AuditEvent.objects.values(*CHAINED_FIELDS, "prev_hash").get(seq=2)
    row["actor"] = "mallory"
    rehashed = chain_hash(prev_hash=row["prev_hash"], seq=2, digest=content_digest(row))
    as_superuser("UPDATE audit_auditevent SET actor = 'mallory', row_hash = %s WHERE seq = 2", [rehashed])
    message = verify()
    assert message.startswith("FAILED at seq 3 ")
    assert "prev_hash does not match the row_hash of seq 2" in message


def test_verification_reports_through_the_selector_too() -> None:
    events(3)
    report = audit_chain_verify(batch_size=2)  # crosses page boundaries
    assert report.ok and report.events == 3 and report.head.seq == 3
