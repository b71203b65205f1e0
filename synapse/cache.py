"""A Django cache backend that is an atomic counter store on the database (PostgreSQL or SQLite).

Rate limits, token reservations and spend must hold exactly across workers and replicas, so
every operation is one SQL statement that reads and writes the row together:

    add   UPDATE … WHERE <the old row expired>, else INSERT … ON CONFLICT (key) DO NOTHING
          (one statement on PostgreSQL; a lost add locks nothing)
    incr  UPDATE … SET value = value + delta WHERE key = … AND <not expired> RETURNING value

    hold  every counter of one request's reservation, in one statement (`synapse_counter_hold`,
          migration synapse/0002), with the caller's COMMIT in the same round trip

Django's own `DatabaseCache` reads, then writes, in separate statements; under concurrency its
`incr` loses most increments. This backend stores integers only (all a counter needs).
Use django-redis instead when REDIS_URL is set (docs/LIMITS.md says when).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.db import connections
from django.db.backends.postgresql.base import ServerBindingCursor

from teams.scope_stamp import ScopeChangedError

if TYPE_CHECKING:
    from teams.limits import Count  # key, amount, ttl, limit, give_back

# Expired rows are deleted at most this often per process, from within `add` and `hold`.
PRUNE_EVERY_SECONDS = 60.0
_pruned_at = 0.0
_prune_lock = threading.Lock()


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"CounterCache stores integers only, not {type(value).__name__}")
    return value


class CounterCache(BaseCache):
    """LOCATION: the table (default `synapse_counter`); OPTIONS["DATABASE"]: the connection alias."""

    # Its writes join the caller's transaction (a rolled-back hop takes its holds with it).
    transactional = True

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self._table = location or "synapse_counter"
        self._alias = params.get("OPTIONS", {}).get("DATABASE", "default")

    @property
    def alias(self) -> str:
        """The database connection the counters live on."""
        return self._alias

    # ── SQL ──

    def _execute(self, sql: str, params: list[Any], *, bound: bool = False) -> list[tuple[Any, ...]]:
        """`bound`: the parameters go to the server beside one statement (PostgreSQL's server-side
        binding), prepared by it after a few runs, instead of quoted into its text by the client.
        For the per-request statements (`hold`, `adjust`): psycopg's client-side binding parses
        the text for placeholders and quotes each value in Python, and the server plans the text
        every time. Only for one statement alone: a `; COMMIT` riding along needs the text."""
        connection = connections[self._alias]
        table = connection.ops.quote_name(self._table)
        with self._cursor(connection, bound=bound) as cursor:
            cursor.execute(sql.replace("{table}", table), params)
            return list(cursor.fetchall()) if cursor.description else []

    @staticmethod
    def _cursor(connection: Any, *, bound: bool) -> Any:
        if not bound or connection.vendor != "postgresql":
            return connection.cursor()
        # What `connection.cursor()` does, with the server-binding class Django has for the
        # `server_side_binding` option (which would switch the whole ORM over): the same
        # wrappers, so errors, execute wrappers and captured queries see this statement too.
        connection.close_if_health_check_failed()
        connection.ensure_connection()
        connection.validate_thread_sharing()
        with connection.wrap_database_errors:
            cursor = ServerBindingCursor(connection.connection)  # type: ignore[call-arg]  # the stubs lack psycopg's signature
        return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)

    def _expiry(self, timeout: float | None) -> float | None:
        return self.get_backend_timeout(timeout)

    # ── the cache API ──

    def add(self, key: str, value: Any, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        now = time.time()
        value, expires = _integer(value), self._expiry(timeout)
        if connections[self._alias].vendor == "postgresql":
            # Not `ON CONFLICT DO UPDATE … WHERE <expired>`: PostgreSQL locks the conflicting row
            # even when that WHERE is false, so a failed add (a slot another request holds)
            # would keep the row locked to the end of the caller's transaction, and two
            # requests trying two slots in opposite orders deadlock (teams/concurrency.py).
            # An expired row is taken by an UPDATE, which locks only the row it changes; an
            # absent one by an INSERT … DO NOTHING, which locks nothing when it loses.
            rows = self._execute(
                "WITH taken AS (UPDATE {table} SET value = %s, expires = %s "
                "WHERE key = %s AND expires IS NOT NULL AND expires <= %s RETURNING value), "
                "added AS (INSERT INTO {table} (key, value, expires) SELECT %s, %s, %s "
                "WHERE NOT EXISTS (SELECT 1 FROM taken) ON CONFLICT (key) DO NOTHING RETURNING value) "
                "SELECT value FROM taken UNION ALL SELECT value FROM added",
                [value, expires, key, now, key, value, expires],
            )
        else:  # SQLite: one writer at a time, no row locks to hold
            rows = self._execute(
                "INSERT INTO {table} (key, value, expires) VALUES (%s, %s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires "
                "WHERE {table}.expires IS NOT NULL AND {table}.expires <= %s RETURNING value",
                [key, value, expires, now],
            )
        self._maybe_prune(now)
        return bool(rows)

    @property
    def holds_in_one_statement(self) -> bool:
        """Whether `hold` is here: PostgreSQL, on the table migration synapse/0002 made it for.
        SQLite has one writer, so nothing waits between a request's per-counter statements."""
        return connections[self._alias].vendor == "postgresql" and self._table == "synapse_counter"

    def hold(
        self, counts: Sequence[Count], *, stop: bool, commit: bool = False, stamp: int | None = None
    ) -> tuple[list[int | None], bool]:
        """Add to several counters in order, in one statement (migration synapse/0002 says why
        and what each field means). Returns each reached counter's total before any give-back,
        ending with None at a counter that must exist and does not; and whether it committed
        (outside a transaction the statement commits itself).

        `commit`: the caller's transaction ends here; if it is the outermost one, its COMMIT is
        sent with the statement, so the counter rows are unlocked as soon as the server has run
        it, not a client round trip later (which, on a busy worker, waits for the GIL first).
        Django's own commit at the block's end then finds nothing to do.
        `stamp`: hold only while the scope stamp is this (teams/migrations/0006); `ScopeChangedError`
        without any change when it has moved.
        """
        now = time.time()
        self._maybe_prune(now)  # first: not while the held rows are locked
        connection = connections[self._alias]
        commit = commit and len(connection.atomic_blocks) == 1  # never a caller's enclosing transaction
        # One JSON parameter: client-side quoting of an array per field cost more than the call.
        payload = json.dumps([[self.make_and_validate_key(key), _integer(amount), *rest] for key, amount, *rest in counts])
        if stamp is None:
            sql, params = "SELECT synapse_counter_hold(%s::jsonb, %s::float8, %s)", [payload, now, stop]
        else:
            sql, params = "SELECT synapse_counter_hold_at(%s::bigint, %s::jsonb, %s::float8, %s)", [stamp, payload, now, stop]
        rows = self._execute(sql + "; COMMIT" if commit else sql, params, bound=not commit)
        if rows[0][0] is None:
            raise ScopeChangedError
        return list(rows[0][0]), commit or not connection.in_atomic_block

    def adjust(self, deltas: Sequence[tuple[str, int]]) -> list[int | None]:
        """Add each delta to its live counter, in the order given, in one statement (migration
        synapse/0002); each counter's total, None where its window has ended."""
        rows = self._execute(
            "SELECT synapse_counter_adjust(%s::jsonb, %s::float8)",
            [json.dumps([[self.make_and_validate_key(key), _integer(delta)] for key, delta in deltas]), time.time()],
            bound=True,
        )
        return list(rows[0][0])

    def _maybe_prune(self, now: float) -> None:
        # Per process, not per instance: Django makes a cache instance per thread and per
        # request context, which would prune on nearly every request.
        global _pruned_at
        with _prune_lock:
            if now - _pruned_at <= PRUNE_EVERY_SECONDS:
                return
            _pruned_at = now
        self._prune(now)

    def _prune(self, now: float) -> None:
        # Inside a caller's transaction (a request's holds) a plain DELETE of every expired row
        # would wait on rows other transactions hold, while holding rows they wait for: a
        # deadlock. Rows another transaction holds are skipped (the next prune takes them).
        if connections[self._alias].vendor == "postgresql":
            self._execute(
                "DELETE FROM {table} WHERE key IN (SELECT key FROM {table} WHERE expires IS NOT NULL AND expires <= %s "
                "FOR UPDATE SKIP LOCKED)",
                [now],
            )
        else:
            self._execute("DELETE FROM {table} WHERE expires IS NOT NULL AND expires <= %s", [now])

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        rows = self._execute("SELECT value FROM {table} WHERE key = %s AND (expires IS NULL OR expires > %s)", [key, time.time()])
        return rows[0][0] if rows else default

    def get_many(self, keys: Any, version: int | None = None) -> dict[str, Any]:
        # One statement for all (a key's concurrency slots are read together on every request).
        names = {self.make_and_validate_key(key, version=version): key for key in keys}
        if not names:
            return {}
        marks = ", ".join(["%s"] * len(names))
        rows = self._execute(
            f"SELECT key, value FROM {{table}} WHERE key IN ({marks}) AND (expires IS NULL OR expires > %s)",
            [*names, time.time()],
        )
        return {names[key]: value for key, value in rows}

    def set(self, key: str, value: Any, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        key = self.make_and_validate_key(key, version=version)
        self._execute(
            "INSERT INTO {table} (key, value, expires) VALUES (%s, %s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires",
            [key, _integer(value), self._expiry(timeout)],
        )

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        key = self.make_and_validate_key(key, version=version)
        rows = self._execute(
            "UPDATE {table} SET value = value + %s WHERE key = %s AND (expires IS NULL OR expires > %s) RETURNING value",
            [_integer(delta), key, time.time()],
        )
        if not rows:
            raise ValueError(f"Key '{key}' not found")
        return int(rows[0][0])

    def touch(self, key: str, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        rows = self._execute(
            "UPDATE {table} SET expires = %s WHERE key = %s AND (expires IS NULL OR expires > %s) RETURNING key",
            [self._expiry(timeout), key, time.time()],
        )
        return bool(rows)

    def delete(self, key: str, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return bool(self._execute("DELETE FROM {table} WHERE key = %s RETURNING key", [key]))

    def delete_if(self, key: str, value: int, version: int | None = None) -> bool:
        """Delete the key only while it holds `value` (a lease given back by its holder only)."""
        key = self.make_and_validate_key(key, version=version)
        return bool(self._execute("DELETE FROM {table} WHERE key = %s AND value = %s RETURNING key", [key, _integer(value)]))

    def has_key(self, key: str, version: int | None = None) -> bool:
        return self.get(key, version=version) is not None

    def clear(self) -> None:
        self._execute("DELETE FROM {table}", [])
