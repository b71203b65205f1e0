"""The counter store neither waits on nor keeps locked a row it does not change: its writes run
inside a request's holds transaction, where either could deadlock with a concurrent reservation
(full-suite runs refused a request with a 503 that way: two requests, each holding a slot row
it had failed to take, each waiting for the other's)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from django.core.cache import caches
from django.db import connection, connections, transaction

from synapse.cache import CounterCache

pytestmark = pytest.mark.django_db(transaction=True)

T = TypeVar("T")


@contextmanager
def another_transaction(work: Callable[[], T]) -> Iterator[T]:
    """Run `work` in a transaction on another thread and keep that transaction open (as a
    request's holds transaction stays open) until the block ends; yields what `work` returned."""
    done, release = threading.Event(), threading.Event()
    results: list[T] = []

    def run() -> None:
        with transaction.atomic():
            results.append(work())
            done.set()
            release.wait(timeout=30)
        connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert done.wait(timeout=30)
        yield results[0]
    finally:
        release.set()
        thread.join(timeout=30)


def waits_fail() -> Any:
    """A cursor in this thread's transaction, where a lock wait now fails the test instead of
    hanging it."""
    cursor = connection.cursor()
    cursor.execute("SET LOCAL lock_timeout = '2s'")
    return cursor


def test_the_prune_skips_an_expired_row_another_transaction_holds() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer: nothing to skip")
    counters = caches["counters"]
    assert isinstance(counters, CounterCache)
    counters.set("held", 1, timeout=-1)  # expired already
    counters.set("free", 1, timeout=-1)
    # The other transaction re-takes the expired row: locked until it commits.
    with another_transaction(lambda: counters.add("held", 5, timeout=60)), transaction.atomic(), waits_fail():
        counters._prune(time.time())
    assert counters.get("free") is None  # pruned
    assert counters.get("held") == 5  # the other transaction's row is untouched


def test_a_lost_add_keeps_no_lock_on_the_row() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer: no row locks")
    counters = caches["counters"]
    assert isinstance(counters, CounterCache)
    counters.set("slot-a", 1, timeout=60)  # both slots held by requests that committed
    counters.set("slot-b", 1, timeout=60)
    with another_transaction(lambda: counters.add("slot-b", 7, timeout=60)) as lost, transaction.atomic():
        assert lost is False  # slot-b is held
        with waits_fail() as cursor:
            assert counters.add("slot-a", 9, timeout=60) is False
            # The row the other transaction failed to take is not locked by it.
            cursor.execute("SELECT value FROM synapse_counter WHERE key = %s FOR UPDATE NOWAIT", [counters.make_key("slot-b")])
            assert cursor.fetchone() == (1,)
    assert counters.get("slot-b") == 1


def test_add_takes_an_expired_row_and_an_absent_one_once() -> None:
    counters = caches["counters"]
    assert isinstance(counters, CounterCache)
    counters.set("old", 1, timeout=-1)  # expired
    assert counters.add("old", 2, timeout=60) is True and counters.get("old") == 2
    assert counters.add("old", 3, timeout=60) is False and counters.get("old") == 2
    assert counters.add("new", 4, timeout=60) is True and counters.add("new", 5, timeout=60) is False
    assert counters.get("new") == 4
