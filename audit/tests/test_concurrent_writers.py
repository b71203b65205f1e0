"""Writers in several processes at once still make one chain: no fork, no gap, commit order."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from conftest import ROOT, database_url_for_tests
from tests.waiting import wait_until

WRITERS, EACH = 4, 60

# Each writer signals it is ready, then waits for "go", so the processes really overlap.
WRITER = """
import sys, time
from pathlib import Path
import django
django.setup()
from audit.services import audit_governance_event
name, each, rendezvous = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
(rendezvous / f"ready-{name}").touch()
while not (rendezvous / "go").exists():
    time.sleep(0.005)
for i in range(each):
    audit_governance_event(event_type="routing_changed", actor_name=name, detail={"i": i})
"""


def run_writers(database_url: str, rendezvous: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, f"w{n}", str(EACH), str(rendezvous)], cwd=ROOT, env=env)
        for n in range(WRITERS)
    ]
    wait_until(lambda: len(list(rendezvous.glob("ready-*"))) >= WRITERS, timeout=60)
    (rendezvous / "go").touch()
    assert [writer.wait(timeout=120) for writer in writers] == [0] * WRITERS


@pytest.mark.sqlite
@pytest.mark.django_db(transaction=True)
def test_it_makes_one_unbroken_chain_from_writers_in_several_processes(tmp_path: Path) -> None:
    if connection.vendor == "sqlite":
        # The SQLite test database lives in this process's memory: the writers get a file of their own.
        database_url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
        env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        run_writers(database_url, tmp_path)
        verified = subprocess.run(
            [sys.executable, "manage.py", "verify_audit"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.startswith(f"ok: {WRITERS * EACH} events")
        return

    run_writers(database_url_for_tests(), tmp_path)
    report = audit_chain_verify()
    assert report.ok, report.line()
    assert report.events == WRITERS * EACH
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, WRITERS * EACH + 1))
    # They did overlap: along the chain the writer changes far more often than once per writer.
    actors = list(AuditEvent.objects.order_by("seq").values_list("actor", flat=True))
    switches = sum(1 for a, b in itertools.pairwise(actors) if a != b)
    assert switches > WRITERS
