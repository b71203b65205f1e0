"""The database pool's check: ping a connection before handing it out only if it sat unused.

psycopg's pool can check each connection before handing it out (Django's CONN_HEALTH_CHECKS
does so on every checkout: one empty round trip, and one more transaction in PostgreSQL's
statistics, per database hop). A connection handed out a moment ago was working a moment ago;
one that sat in the pool through a database restart has not been handed out since, so it is
still checked and replaced: the first request after an outage is served (docs/RELIABILITY.md).
A connection that breaks within the window fails its request (fail-closed, a 503) and the pool
drops it.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from psycopg_pool import ConnectionPool

# Seconds a connection may go unchecked after its last checkout.
RECENT_SECONDS = 1.0

_checked_out: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def check_unless_recent(connection: Any) -> None:
    """The pool's check (psycopg calls it with the raw connection it is about to hand out)."""
    now = time.monotonic()
    last = _checked_out.get(connection)
    _checked_out[connection] = now
    if last is None or now - last >= RECENT_SECONDS:
        ConnectionPool.check_connection(connection)


def checked_out_recently(connection: Any) -> bool:
    """Whether handing `connection` out now skips its check (synapse/loop_db.py takes only such
    a connection on the event loop: a failed check waits and retries, which must not stall it)."""
    last = _checked_out.get(connection)
    return last is not None and time.monotonic() - last < RECENT_SECONDS


def use_recent_check(sender: Any, connection: Any, **kwargs: Any) -> None:
    """`connection_created` receiver: give the pool this module's check in place of Django's.

    Django builds the pool with `check=ConnectionPool.check_connection` when CONN_HEALTH_CHECKS
    is on and offers no way to pass another (a `check` in the pool options is a duplicate
    argument), so the pool's attribute is replaced once, after its first connection.
    psycopg_pool keeps it in `_check` (psycopg-pool 3.3; synapse/tests/test_pool_check.py
    fails by name if that changes).
    """
    pool = getattr(connection, "pool", None)  # PostgreSQL with a pool only
    if pool is not None and getattr(pool, "_check", None) is ConnectionPool.check_connection:
        pool._check = check_unless_recent
