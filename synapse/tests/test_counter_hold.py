"""`CounterCache.hold`: a request's counters in one statement (PostgreSQL's synapse_counter_hold)."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.db import connection, connections, transaction

from synapse.cache import CounterCache

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def counters() -> CounterCache:
    store = caches["counters"]
    assert isinstance(store, CounterCache)
    if not store.holds_in_one_statement:
        pytest.skip("one-statement holds are PostgreSQL's")
    return store


def test_it_adds_in_order_and_stops_at_a_breach_giving_its_amount_back(counters: CounterCache) -> None:
    counters.set("tpm", 90, timeout=60)
    counts = [("rpm", 1, 65.0, 10, False), ("tpm", 20, 65.0, 100, True), ("spend", 5, None, 50, True)]
    totals, committed = counters.hold(counts, stop=True)
    # rpm created at 1; tpm 90 + 20 = 110 over 100: given back, and the spend counter not reached.
    # Outside a transaction the statement commits itself.
    assert totals == [1, 110] and committed is True
    assert counters.get("rpm") == 1 and counters.get("tpm") == 90 and counters.get("spend") is None
    # Without stop (monitor mode) every counter is reached; a missing one that must exist ends it.
    totals, _ = counters.hold([("rpm", 1, 65.0, 1, False), ("spend", 5, None, 50, True)], stop=False)
    assert totals == [2, None] and counters.get("rpm") == 2


def test_an_expired_counter_starts_again(counters: CounterCache) -> None:
    counters.set("rpm", 7, timeout=-1)
    assert counters.hold([("rpm", 1, 65.0, 10, False)], stop=True)[0] == [1]


def test_it_commits_the_callers_transaction_only_when_that_is_the_outermost(counters: CounterCache) -> None:
    with transaction.atomic():
        totals, committed = counters.hold([("rpm", 1, 65.0, 10, False)], stop=True, commit=True)
        assert totals == [1]
        assert committed is True
        # Already visible to another session, before this block ends.
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT value FROM synapse_counter WHERE key = %s", [counters.make_key("rpm")])
                assert cursor.fetchone() == (1,)
        finally:
            other.close()
    with transaction.atomic():
        _, committed = counters.hold([("rpm", 1, 65.0, 10, False)], stop=True)
        assert committed is False  # the caller's transaction commits it
        transaction.set_rollback(True)
    with transaction.atomic(), transaction.atomic():  # a savepoint inside a caller's transaction
        _, committed = counters.hold([("rpm", 1, 65.0, 10, False)], stop=True, commit=True)
        assert committed is False
        transaction.set_rollback(True)
    assert counters.get("rpm") == 1 and not connection.in_atomic_block


def test_adjust_corrects_live_counters_in_order_and_skips_ended_ones(counters: CounterCache) -> None:
    counters.set("tpm", 100, timeout=60)
    counters.set("old", 5, timeout=-1)  # its window has ended
    assert counters.adjust([("old", -3), ("tpm", -40)]) == [None, 60]
    assert counters.get("tpm") == 60


def test_the_per_request_statements_are_bound_by_the_server_and_prepared(counters: CounterCache) -> None:
    # Client-side binding would quote the values into the text: never prepared, planned every time.
    connection.ensure_connection()
    if connection.connection.prepare_threshold is None:
        pytest.skip("prepared statements are off (SYNAPSE_DB_PREPARED_STATEMENTS=0)")
    for _ in range(connection.connection.prepare_threshold + 1):
        counters.hold([("rpm", 1, 65.0, 1000, False)], stop=True)
        counters.adjust([("rpm", 0)])
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = " ".join(statement for (statement,) in cursor.fetchall())
    assert "synapse_counter_hold(" in prepared and "synapse_counter_adjust(" in prepared
    # Beside a COMMIT the hold keeps its text, and the counters are still right.
    with transaction.atomic():
        assert counters.hold([("rpm", 1, 65.0, 1000, False)], stop=True, commit=True) == (
            [connection.connection.prepare_threshold + 2],
            True,
        )
