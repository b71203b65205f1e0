"""Database hops on the event loop (synapse/loop_db.py): one thread, a connection each, awaited waits."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, transaction
from django.db.backends.postgresql.base import DatabaseWrapper

from synapse import db, loop_db

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not db.on_loop(), reason="hops run on the event loop on PostgreSQL only"),
]


def _backend_after_sleep(seconds: float) -> tuple[int, str]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), pg_sleep(%s)", [seconds])
        pid = cursor.fetchone()[0]
    return pid, threading.current_thread().name


def test_hops_wait_on_the_loop_together_each_with_its_own_connection() -> None:
    async def three() -> tuple[list[tuple[int, str]], float]:
        # The pool opens and makes a connection each (their first checkout is on database threads:
        # a connection not handed out within the last second is pinged first, never on the loop).
        # A connection the pool made meanwhile and never handed out is taken by a thread too.
        for _ in range(3):
            await asyncio.gather(*[db.run_db(_backend_after_sleep, 0) for _ in range(3)])
        started = time.monotonic()
        results = await asyncio.gather(*[db.run_db(_backend_after_sleep, 0.3) for _ in range(3)])
        return list(results), time.monotonic() - started

    results, took = asyncio.run(three())
    assert {name for _, name in results} == {threading.current_thread().name}  # no thread hop
    assert len({pid for pid, _ in results}) == 3  # a connection each, swapped in as each runs
    assert took < 0.8  # the three sleeps overlapped: the loop served the others while one waited


def test_a_hop_switched_out_mid_transaction_keeps_its_connection_to_itself() -> None:
    written = asyncio.Event()

    def write_and_hold(loop: asyncio.AbstractEventLoop) -> int:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE hop_probe (n int) ON COMMIT DROP")
            cursor.execute("INSERT INTO hop_probe VALUES (1)")
            loop.call_soon_threadsafe(written.set)
            cursor.execute("SELECT pg_sleep(0.3)")  # switched out here while the other hop runs
            cursor.execute("SELECT count(*) FROM hop_probe")
            return int(cursor.fetchone()[0])

    def other_sees() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('pg_temp.hop_probe') IS NOT NULL")
            return bool(cursor.fetchone()[0])

    async def run() -> tuple[int, bool]:
        await db.run_db(other_sees)
        first = asyncio.ensure_future(db.run_db(write_and_hold, asyncio.get_running_loop()))
        await written.wait()
        seen = await db.run_db(other_sees)  # runs while the first hop waits inside its transaction
        return await first, seen

    count, seen = asyncio.run(run())
    assert count == 1 and seen is False


def test_an_error_in_a_hop_is_raised_in_its_caller_and_the_next_hop_runs() -> None:
    def fails() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    def works() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 7")
            return int(cursor.fetchone()[0])

    async def run() -> int:
        with pytest.raises(DatabaseError):
            await db.run_db(fails)
        return await db.run_db(works)

    assert asyncio.run(run()) == 7


def test_a_cancelled_caller_leaves_its_hop_to_finish() -> None:
    finished: list[int] = []

    def slow() -> None:
        pid, _ = _backend_after_sleep(0.2)
        finished.append(pid)

    async def run() -> None:
        await db.run_db(_backend_after_sleep, 0)
        caller = asyncio.ensure_future(db.run_db(slow))
        await asyncio.sleep(0.05)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.sleep(0.4)

    asyncio.run(run())
    assert len(finished) == 1


def test_with_no_connection_free_the_hop_goes_to_a_database_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop_db, "idle_connection", lambda: False)
    _, name = asyncio.run(db.run_db(_backend_after_sleep, 0))
    assert name.startswith("synapse-db")


def _idle_connections() -> int:
    pool = DatabaseWrapper._connection_pools.get(DEFAULT_DB_ALIAS)  # type: ignore[attr-defined]
    return len(getattr(pool, "_pool", ()))


def test_a_connection_that_sat_unused_is_checked_on_a_database_thread_not_on_the_loop() -> None:
    async def run() -> tuple[str, str]:
        # The pool hands out its least recently returned connection first: hand each idle one
        # out now (one left unused by an earlier test would be stale, and taken by a thread).
        for _ in range(_idle_connections() + 1):
            await db.run_db(_backend_after_sleep, 0)
        _, fresh = await db.run_db(_backend_after_sleep, 0)
        await asyncio.sleep(1.1)  # pool_check.RECENT_SECONDS: the next checkout pings first
        _, stale = await db.run_db(_backend_after_sleep, 0)
        return fresh, stale

    fresh, stale = asyncio.run(run())
    assert fresh == threading.current_thread().name
    assert stale.startswith("synapse-db")
