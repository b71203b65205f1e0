"""`export_audit`: every column, in chain order, as JSON lines or CSV, for a SIEM."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.chain import CHAINED_FIELDS
from audit.models import AuditEvent
from audit.services import audit_event_append

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


@pytest.fixture
def three_days() -> None:
    for day in (1, 2, 3):
        audit_event_append(
            values={
                "occurred_at": datetime(2026, 3, day, 12, tzinfo=UTC),
                "event_type": "request",
                "request_id": f"req_{day}",
                "decision": "allowed",
                "attempts": [{"backend": "b", "latency_ms": 1.5}],
            }
        )


def export(*args: str) -> str:
    out = StringIO()
    call_command("export_audit", *args, stdout=out)
    return out.getvalue()


def test_it_exports_json_lines_in_a_window(three_days: None) -> None:
    lines = [json.loads(line) for line in export("--since", "2026-03-02", "--until", "2026-03-03").splitlines()]
    assert [line["request_id"] for line in lines] == ["req_2"]
    row = lines[0]
    assert set(row) == {"id", "seq", "prev_hash", "row_hash", *CHAINED_FIELDS}
    assert row["seq"] == 2 and row["row_hash"] == AuditEvent.objects.get(seq=2).row_hash
    assert row["attempts"] == [{"backend": "b", "latency_ms": 1.5}]
    assert row["occurred_at"].startswith("2026-03-02T12:00:00")


def test_it_exports_csv_with_a_header(three_days: None) -> None:
    rows = list(csv.DictReader(StringIO(export("--format", "csv", "--since", "2026-03-02T00:00:00+00:00"))))
    assert [row["request_id"] for row in rows] == ["req_2", "req_3"]
    assert json.loads(rows[0]["attempts"]) == [{"backend": "b", "latency_ms": 1.5}]


def test_it_refuses_a_date_it_cannot_read(three_days: None) -> None:
    with pytest.raises(CommandError, match="not an ISO date"):
        export("--since", "last tuesday")
