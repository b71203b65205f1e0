"""The counter store neither waits on nor keeps locked a row it does not change: its writes run
inside a request's holds transaction, where either could deadlock with a concurrent reservation
(full-suite runs refused a request with a 503 that way: two requests, each holding a slot row
it had failed to take, each waiting for the other's)."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.cache import caches
from django.db import connection, connections, transaction

from synapse.cache import CounterCache

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_prune_skips_an_expired_row_another_transaction_holds() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer: nothing to skip")
    counters = caches["counters"]
    assert isinstance(counters, CounterCache)
    counters.set("held", 1, timeout=-1)  # expired already
    counters.set("free", 1, timeout=-1)
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with transaction.atomic():
            counters.add("held", 5, timeout=60)  # re-takes the expired row: locked until commit
            held.set()
            release.wait(timeout=30)
        connections.close_all()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(timeout=30)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '2s'")  # a wait would fail the test, not hang it
            counters._prune(time.time())
        assert counters.get("free") is None  # pruned
    finally:
        release.set()
        thread.join(timeout=30)
    assert counters.get("held") == 5  # the other transaction's row is untouched


def test_a_lost_add_keeps_no_lock_on_the_row() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer: no row locks")
    counters = caches["counters"]
    assert isinstance(counters, CounterCache)
    counters.set("slot-a", 1, timeout=60)  # both slots held by requests that committed
    counters.set("slot-b", 1, timeout=60)
    tried, release = threading.Event(), threading.Event()
    results: list[bool] = []

    def other_request() -> None:
        with transaction.atomic():
            results.append(counters.add("slot-b", 7, timeout=60))  # lost: slot-b is held
            tried.set()
            release.wait(timeout=30)  # its transaction stays open, as a request's holds do
        connections.close_all()

    thread = threading.Thread(target=other_request)
    thread.start()
    try:
        assert tried.wait(timeout=30)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '2s'")  # a wait would fail the test, not hang it
            assert counters.add("slot-a", 9, timeout=60) is False
            # The row the other transaction failed to take is not locked by it.
            cursor.execute("SELECT value FROM synapse_counter WHERE key = %s FOR UPDATE NOWAIT", [counters.make_key("slot-b")])
            assert cursor.fetchone() == (1,)
    finally:
        release.set()
        thread.join(timeout=30)
    assert results == [False] and counters.get("slot-b") == 1


def test_add_takes_an_expired_row_and_an_absent_one_once() -> None:
    counters = caches["counters"]
    assert isinstance(counters, CounterCache)
    counters.set("old", 1, timeout=-1)  # expired
    assert counters.add("old", 2, timeout=60) is True and counters.get("old") == 2
    assert counters.add("old", 3, timeout=60) is False and counters.get("old") == 2
    assert counters.add("new", 4, timeout=60) is True and counters.add("new", 5, timeout=60) is False
    assert counters.get("new") == 4
