"""The pool checks a connection before handing it out only if it was not handed out within the
last second (synapse/pool_check.py): one round trip less per database hop under load, and a
connection that sat through a database restart is still checked and replaced."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from synapse import pool_check


@pytest.mark.django_db
def test_the_pool_uses_the_recent_check_after_its_first_connection() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the pool is PostgreSQL's")
    connection.ensure_connection()
    pool = getattr(connection, "pool", None)  # PostgreSQL's wrapper has one; the base class does not
    assert pool is not None
    # psycopg_pool keeps the check in `_check`; if an upgrade renames it, this fails by name.
    assert pool._check is pool_check.check_unless_recent


def test_it_checks_a_connection_seen_for_the_first_time_or_after_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[Any] = []
    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(checked.append))
    clock = [100.0]
    monkeypatch.setattr(pool_check.time, "monotonic", lambda: clock[0])

    class Raw:  # stands in for a psycopg connection (weak-referenceable)
        pass

    raw = Raw()
    pool_check.check_unless_recent(raw)  # never seen: checked
    clock[0] += 0.5
    pool_check.check_unless_recent(raw)  # handed out half a second ago: not checked
    clock[0] += pool_check.RECENT_SECONDS
    pool_check.check_unless_recent(raw)  # idle for the window: checked
    assert checked == [raw, raw]


def test_a_failed_check_raises_so_the_pool_replaces_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(conn: Any) -> None:
        raise RuntimeError("server closed the connection")

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(broken))

    class Raw:
        pass

    with pytest.raises(RuntimeError):
        pool_check.check_unless_recent(Raw())
