"""Group commit (audit/group_commit.py): rows of concurrent requests share a transaction, the
chain stays one unbroken sequence across batches, a waiter is released only after the commit
that holds its row, and one bad row costs only its own request."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, OperationalError, connection, connections
from django.utils import timezone

from audit.group_commit import GroupCommitter, audit_append_with, group_commit_enabled
from audit.models import AuditEvent, EventType
from audit.selectors import audit_chain_verify
from conftest import ROOT, database_url_for_tests
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _row(n: int, **extra: Any) -> Callable[[], dict[str, Any]]:
    def values() -> dict[str, Any]:
        return {"occurred_at": timezone.now(), "event_type": EventType.REQUEST, "request_id": f"req_{n}", **extra}

    return values


@pytest.fixture
def committer() -> GroupCommitter:
    if connection.vendor != "postgresql":
        pytest.skip("rows are grouped on PostgreSQL only")
    return GroupCommitter()


def test_it_is_on_for_postgresql() -> None:
    assert group_commit_enabled() == (connection.vendor == "postgresql")


def test_rows_from_many_threads_make_one_chain_in_fewer_commits(committer: GroupCommitter) -> None:
    futures: list[Future[Any]] = []
    lock = threading.Lock()

    def submitter(t: int) -> None:
        for i in range(25):
            future = committer.submit(values=_row(t * 100 + i))
            with lock:
                futures.append(future)

    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done, _ = wait(futures, timeout=60)
    assert all(f.exception() is None for f in done) and len(done) == 200

    report = audit_chain_verify()
    assert report.ok and report.events == 200, report.line()
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, 201))
    assert set(AuditEvent.objects.values_list("request_id", flat=True)) == {
        f"req_{t * 100 + i}" for t in range(8) for i in range(25)
    }
    assert committer.batches < 200  # rows that arrived together were committed together


async def _in_threads(fn: Callable[..., Any], *args: Any) -> Any:
    """A `run` for `GroupCommitter.write`: each hop on a thread of its own, with its own
    connection, closed when the hop ends (as the pipeline's hops give theirs back)."""

    def hop() -> Any:
        try:
            return fn(*args)
        finally:
            connections.close_all()

    return await asyncio.to_thread(hop)


def test_one_batch_of_varied_rows_is_stored_as_given_in_the_order_given(committer: GroupCommitter) -> None:
    """A batch goes to the server as one JSON array of rows: rows whose columns are null in some
    rows and set in others, JSON of different shapes, decimals, addresses and text come back as
    written, chained in the order they were queued, in one commit."""
    varied: list[dict[str, Any]] = [
        {"dlp": [{"category": "pii", "count": 2}], "cost": Decimal("0.00000414"), "client_ip": "10.0.0.1"},
        {"detail": {"rpc_method": "tools/call", "nested": {"ü": [1, None, "x"]}}, "client_ip": "::ffff:10.0.0.2"},
        {"model": "llama-3 «ß»", "prompt_tokens": 12, "latency_ms": 1.25, "stream": True},
        {},
        {"attempts": [], "dlp": [], "cost": Decimal("12.5"), "status": 200},
    ]

    async def write_all() -> list[Any]:
        return await asyncio.gather(
            *(committer.write(values=_row(n, **extra), run=_in_threads) for n, extra in enumerate(varied))
        )

    written = asyncio.run(write_all())

    assert committer.batches == 1
    assert [w.seq for w in written] == [1, 2, 3, 4, 5]
    rows = list(AuditEvent.objects.order_by("seq"))
    assert [row.request_id for row in rows] == [f"req_{n}" for n in range(len(varied))]
    assert rows[0].dlp == [{"category": "pii", "count": 2}] and rows[0].cost == Decimal("0.00000414")
    assert rows[1].detail == {"rpc_method": "tools/call", "nested": {"ü": [1, None, "x"]}}
    assert rows[1].client_ip == "::ffff:10.0.0.2" and rows[1].cost is None
    assert rows[2].model == "llama-3 «ß»" and rows[2].prompt_tokens == 12 and rows[2].stream is True
    assert rows[3].dlp == [] and rows[3].detail == {} and rows[3].client_ip is None
    assert rows[4].cost == Decimal("12.50000000") and rows[4].status == 200
    report = audit_chain_verify()
    assert report.ok and report.events == len(varied), report.line()


def test_a_companion_write_commits_with_its_row_and_answers_the_waiter(committer: GroupCommitter) -> None:
    seen: list[list[Any]] = []

    def companion(payloads: list[Any]) -> list[Any]:
        # Called outside any transaction: it makes its own (a single statement needs none).
        seen.append([*payloads, connections[committer.alias].get_autocommit()])
        AuditEvent.objects.exists()
        return [p * 2 for p in payloads]

    futures = [committer.submit(values=_row(n), companion=companion, payload=n) for n in range(10)]
    assert [f.result(timeout=30).result for f in futures] == [n * 2 for n in range(10)]
    assert all(batch[-1] is True for batch in seen)
    seen = [batch[:-1] for batch in seen]
    seqs = [f.result().seq for f in futures]
    assert sorted(seqs) == list(range(1, 11))  # each waiter learns its row's place in the chain
    assert sorted(p for batch in seen for p in batch) == list(range(10))  # each payload once
    assert AuditEvent.objects.count() == 10


def test_on_the_loop_the_companions_and_the_rows_go_at_once_and_the_waiter_gets_both(committer: GroupCommitter) -> None:
    def companion(payloads: list[Any]) -> list[Any]:
        # Sees the batch's rows committed while it runs: the INSERT does not wait for it (with
        # the writer thread's order, companions first, this would wait out its 10 s).
        seen = wait_until(lambda: AuditEvent.objects.filter(request_id__in=["req_0", "req_1"]).count() == 2, timeout=10)
        return [(p, seen) for p in payloads]

    async def write_both() -> list[Any]:
        return await asyncio.gather(
            *(committer.write(values=_row(n), companion=companion, payload=n, run=_in_threads) for n in range(2))
        )

    written = asyncio.run(write_both())
    assert [w.result for w in written] == [(0, True), (1, True)]
    assert [w.seq for w in written] == [1, 2] and committer.batches == 1
    assert audit_chain_verify().ok


def test_on_the_loop_companions_that_cannot_reach_their_database_spare_the_rows(committer: GroupCommitter) -> None:
    def unreachable(payloads: list[Any]) -> list[Any]:
        raise OperationalError("the counters' database went away")

    async def write_both() -> list[Any]:
        return await asyncio.gather(
            *(committer.write(values=_row(n), companion=unreachable, payload=n, run=_in_threads) for n in range(3))
        )

    written = asyncio.run(write_both())
    assert [w.result for w in written] == [None, None, None]  # no settlement: the holds stay counted
    assert [w.seq for w in written] == [1, 2, 3]
    assert audit_chain_verify().ok


def test_on_the_loop_a_row_the_database_refuses_fails_alone_and_keeps_the_others_settled(committer: GroupCommitter) -> None:
    settled: list[int] = []

    def settle(payloads: list[Any]) -> list[Any]:
        settled.extend(payloads)
        return [f"settled {p}" for p in payloads]

    async def write_three() -> list[Any]:
        return await asyncio.gather(
            *(
                committer.write(values=_row(n, status=70_000 if n == 1 else 200), companion=settle, payload=n, run=_in_threads)
                for n in range(3)
            ),
            return_exceptions=True,
        )

    written = asyncio.run(write_three())
    assert isinstance(written[1], DatabaseError)  # smallint out of range: only its own request fails
    assert [written[0].result, written[2].result] == ["settled 0", "settled 2"]
    assert sorted(settled) == [0, 1, 2]  # each settlement made once, the refused row's too
    assert sorted(AuditEvent.objects.values_list("request_id", flat=True)) == ["req_0", "req_2"]
    assert audit_chain_verify().ok


def test_one_bad_row_fails_alone_and_a_failed_companion_spares_the_rows(committer: GroupCommitter) -> None:
    gate = threading.Event()

    def slow(payloads: list[Any]) -> list[Any]:
        gate.wait(timeout=10)  # hold the first batch so the rest queue up behind it
        return [None] * len(payloads)

    def failing(payloads: list[Any]) -> list[Any]:
        if "bad" in payloads:
            raise DatabaseError("the companion failed")
        return ["ok"] * len(payloads)

    def unbuildable() -> dict[str, Any]:
        raise ValueError("not audit columns")

    first = committer.submit(values=_row(0), companion=slow)
    wait_until(lambda: not committer._queue, timeout=10)  # the writer took it
    queued = [
        committer.submit(values=_row(1), companion=failing, payload="good"),
        committer.submit(values=unbuildable),
        committer.submit(values=_row(3), companion=failing, payload="bad"),
        committer.submit(values=_row(4), companion=failing, payload="good"),
    ]
    gate.set()
    assert first.result(timeout=30).result is None
    assert queued[0].result(timeout=30).result == "ok"
    with pytest.raises(ValueError, match="not audit columns"):
        queued[1].result(timeout=30)
    assert queued[2].result(timeout=30).result is None  # its companion failed; its row is written
    assert queued[3].result(timeout=30).result == "ok"
    assert sorted(AuditEvent.objects.values_list("request_id", flat=True)) == ["req_0", "req_1", "req_3", "req_4"]
    assert audit_chain_verify().ok


def test_a_row_the_database_refuses_fails_alone_and_the_rest_of_its_batch_is_written(committer: GroupCommitter) -> None:
    gate = threading.Event()
    first = committer.submit(values=_row(0), companion=lambda payloads: [gate.wait(timeout=10)] * len(payloads))
    wait_until(lambda: not committer._queue, timeout=10)  # the writer took it: the rest queue as one batch
    queued = [committer.submit(values=_row(n, status=70_000 if n == 2 else 200)) for n in range(1, 4)]
    gate.set()
    first.result(timeout=30)
    assert queued[0].result(timeout=30).seq > 0 and queued[2].result(timeout=30).seq > 0
    with pytest.raises(DatabaseError):  # smallint out of range: the driver's error, as Django's
        queued[1].result(timeout=30)
    assert sorted(AuditEvent.objects.values_list("request_id", flat=True)) == ["req_0", "req_1", "req_3"]
    assert audit_chain_verify().ok


def test_an_unreachable_database_fails_every_waiter_of_the_batch_at_once(committer: GroupCommitter) -> None:
    attempts: list[int] = []

    def unreachable(payloads: list[Any]) -> list[Any]:
        attempts.append(len(payloads))
        raise OperationalError("connection refused")

    gate = threading.Event()
    first = committer.submit(values=_row(0), companion=lambda payloads: [gate.wait(timeout=10)] * len(payloads))
    wait_until(lambda: not committer._queue, timeout=10)
    futures = [committer.submit(values=_row(n), companion=unreachable, payload=n) for n in range(1, 6)]
    gate.set()
    first.result(timeout=30)
    for future in futures:
        with pytest.raises(OperationalError):
            future.result(timeout=30)
    assert attempts == [5]  # tried once as a batch, never row by row into a dead database
    assert AuditEvent.objects.count() == 1


def test_the_inline_path_writes_the_row_and_its_companion_in_one_transaction() -> None:
    written = audit_append_with(values=_row(1)(), companion=lambda payloads: [f"{p}!" for p in payloads], payload="x")
    assert written.result == "x!" and written.seq == 1

    def failing(payloads: list[Any]) -> list[Any]:
        AuditEvent.objects.exists()
        raise DatabaseError("the companion failed")

    assert audit_append_with(values=_row(2)(), companion=failing, payload="y").result is None
    assert sorted(AuditEvent.objects.values_list("request_id", flat=True)) == ["req_1", "req_2"]


# A process that writes rows through its group committer, acknowledging each on stdout only
# once its future resolved (as the pipeline answers a client), until it is killed mid-batch.
WRITER = """
import sys, threading, time
import django
django.setup()
from django.utils import timezone
from audit.group_commit import GroupCommitter
committer = GroupCommitter()
batches = 0
def slow(payloads):
    global batches
    batches += 1
    if batches >= 5:
        print("in-batch", flush=True)
        time.sleep(60)  # killed here: this batch is inside its transaction, not committed
    return [None] * len(payloads)
def submit(n):
    values = lambda: {"occurred_at": timezone.now(), "event_type": "request", "request_id": f"req_{n}"}
    future = committer.submit(values=values, companion=slow, payload=n)
    future.add_done_callback(lambda f, n=n: f.exception() is None and print(f"ack {n}", flush=True))
n = 0
while True:
    for _ in range(8):
        submit(n); n += 1
    time.sleep(0.01)
"""


def test_a_crash_before_the_commit_loses_no_acknowledged_row(committer: GroupCommitter, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url_for_tests(), "DJANGO_SETTINGS_MODULE": "tests.settings"}
    writer = subprocess.Popen([sys.executable, "-c", WRITER], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    acknowledged: list[str] = []
    assert writer.stdout is not None
    for line in writer.stdout:
        if line.startswith("ack "):
            acknowledged.append(f"req_{line.split()[1]}")
        elif line.startswith("in-batch"):
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)

    written = set(AuditEvent.objects.values_list("request_id", flat=True))
    assert acknowledged and set(acknowledged) <= written  # every acknowledged row is durable
    assert audit_chain_verify().ok
    assert AuditEvent.objects.count() == len(written)  # no row twice
