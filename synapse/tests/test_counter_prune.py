"""The counter store's prune of expired rows never waits on a row another transaction holds:
inside a request's holds transaction, waiting there could deadlock with a concurrent
reservation (one full-suite run refused a request with a 503 that way)."""

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
