"""Test support: let the test runner empty tables that the database refuses to empty.

pytest-django empties every table after a transactional test (TRUNCATE on PostgreSQL, DELETE
on SQLite), which the append-only triggers refuse, by design. `flush_suspending_triggers()`
makes only that flush run with triggers suspended, inside the flush's own transaction; the
triggers themselves are never altered outside it, so every test runs against them as
production does. Under two roles (tests/roles.py) the tests' role may not TRUNCATE at all: the
flush then runs as the tables' owner, in a session of its own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.operations import BaseDatabaseOperations


@contextmanager
def triggers_suspended(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """Inside the caller's transaction, run without user triggers.

    PostgreSQL: `SET LOCAL session_replication_role = replica` (ordinary triggers do not fire;
    reset when the transaction ends; needs a superuser or, from PostgreSQL 15, SET privilege
    on the parameter). SQLite has no such switch: the triggers are dropped and created again
    before the transaction ends.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("triggers_suspended() must run inside a transaction")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
            try:
                yield
            finally:
                if not connection.needs_rollback:
                    cursor.execute("SET LOCAL session_replication_role = origin")
            return
        if connection.vendor != "sqlite":
            raise ImproperlyConfigured(f"cannot suspend the audit triggers on {connection.vendor}")
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND sql IS NOT NULL")
        triggers = cursor.fetchall()
        for name, _ in triggers:
            cursor.execute(f'DROP TRIGGER "{name}"')
        try:
            yield
        finally:
            for _, sql in triggers:
                cursor.execute(sql)


_TRUNCATE = re.compile(r'^TRUNCATE ((?:"[^"]+"(?:, )?)+);$')


def _as_deletes(sql_list: Iterable[str]) -> list[str]:
    """Django's flush TRUNCATEs every table; with triggers suspended (foreign keys included), a
    DELETE per table empties them the same and is ~10x faster on a test's handful of rows
    (TRUNCATE makes new files for every table and index). A TRUNCATE that also restarts
    sequences or cascades is kept as it is."""
    out: list[str] = []
    for sql in sql_list:
        match = _TRUNCATE.match(sql)
        if match is None:
            out.append(sql)
            continue
        out.extend(f"DELETE FROM {table}" for table in match.group(1).split(", "))
    return out


@contextmanager
def flush_suspending_triggers(*, owner_alias: str | None = None) -> Iterator[None]:
    """While active, Django's flush (and so pytest-django's) empties tables past the triggers.

    `owner_alias`: the alias of the role that owns the tables, when the tests' connections use
    another (PostgreSQL). The flush then runs in a session of this context's own, as that role,
    under another alias: a test that did not ask for `owner_alias` has its connections guarded
    against queries. The session is kept from flush to flush, so a server short of connections
    (other test runs) does not fail the flush.
    """
    original = BaseDatabaseOperations.execute_sql_flush
    owner: BaseDatabaseWrapper | None = None

    def owner_session(alias: str) -> Any:
        nonlocal owner
        if owner is None or owner.connection is None or owner.connection.closed or owner.connection.broken:
            if owner is not None:
                with suppress(DatabaseError):
                    owner.close()
            owner = connections[alias].copy(alias=f"{alias}_flush")
            owner.ensure_connection()
        return owner.connection

    def execute_sql_flush(self: BaseDatabaseOperations, sql_list: Iterable[str]) -> None:
        connection = self.connection
        if connection.vendor == "postgresql":
            sql_list = _as_deletes(sql_list)
        if owner_alias is None or connection.alias == owner_alias:
            with transaction.atomic(using=connection.alias), triggers_suspended(connection):
                original(self, sql_list)
            return
        # A gateway the tests started may still be writing for the last test (its anomaly
        # rules run after the answer): TRUNCATE then waits on, or deadlocks with, that work.
        # The loser of a deadlock is rolled back whole; try again.
        for attempt in range(5):
            session = owner_session(owner_alias)
            try:
                with session.transaction(), session.cursor() as cursor:
                    cursor.execute("SET LOCAL session_replication_role = replica")
                    for sql in sql_list:
                        cursor.execute(sql)
                return
            except psycopg.errors.DeadlockDetected:
                if attempt == 4:
                    raise
                time.sleep(0.2)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign]  # a deliberate test-only patch
    try:
        yield
    finally:
        BaseDatabaseOperations.execute_sql_flush = original  # type: ignore[method-assign]  # a deliberate test-only patch
        if owner is not None:
            owner.close()
