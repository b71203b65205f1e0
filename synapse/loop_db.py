"""Database hops on the event loop: the sync code runs in a greenlet, its socket waits are awaited.

A hop on a database thread (synapse/db.py) costs a hand-off each way, and every round trip
inside it a GIL hand-back to the event loop's thread: measured under load, ~50 context
switches a request in the worker, against ~9 for a bare Django view. Here the hop's function —
Django's ORM and raw psycopg, unchanged — runs in a greenlet on the loop's own thread. When
psycopg would block on its socket (`BridgedConnection.wait`), the greenlet switches back to
the loop, which awaits that socket (psycopg's own `wait_async`) and serves other requests
meanwhile, then switches back in. The same technique as SQLAlchemy's asyncio support.

What each hop must see as its own while it is switched out, it gets on switching in:
- Django's connections: per thread (the loop's), so each hop has its own set, swapped into
  the loop thread's storage when it runs and out when it waits;
- no running event loop: Django refuses sync database calls where a loop runs, and here the
  loop is waiting for this hop, not running beside it.

Only a pool connection free at once, and handed out within the last second (so not pinged
first), is taken here: waiting for one (the pool full, or refilled after an outage), or a ping
that fails (the pool then sleeps before trying the next) would stall the whole loop, so then
the hop goes to a database thread as before.

Code that runs in a hop must not wait for a lock that another hop may hold across a statement:
both hops are on one thread, and the one holding it cannot go on while the other blocks the loop
(dlp/selectors.py's reload lock is taken without waiting for that reason).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import weakref
from asyncio import events
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.postgresql.base import DatabaseWrapper

from .pg_connection import Hop
from .pool_check import checked_out_recently

T = TypeVar("T")


# The connections' holder of each hop, kept for the next one on the same thread (Django's
# wrappers belong to the thread that made them, and cache per connection what is costly to
# work out: routing/rows.py's converters, say).
class _Spare(threading.local):
    def __init__(self) -> None:
        self.holders: list[dict[str, Any]] = []


_spare = _Spare()
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def idle_connection() -> bool:
    """Whether the pool hands out a connection at once and unchecked: only then does a hop run
    on the loop. A connection handed out within the last second is not pinged before use
    (synapse/pool_check.py); one that sat longer is, and if that ping fails the pool sleeps and
    tries the next, which must not stall the loop — a database thread takes that hop. psycopg_pool
    keeps its idle connections in `_pool` and hands out the leftmost (psycopg-pool is pinned in
    requirements.txt; synapse/tests/test_loop_db.py fails if that changes)."""
    # The pool from the backend's class, not `connections[...]`: on the loop each request's
    # context would get a connection wrapper of its own just to find it.
    pool = DatabaseWrapper._connection_pools.get(DEFAULT_DB_ALIAS)  # type: ignore[attr-defined]
    idle = getattr(pool, "_pool", None)
    return bool(idle) and checked_out_recently(idle[0])  # type: ignore[index]


def _enter(hop: Hop, value: Any, error: BaseException | None) -> Any:
    # The loop thread's own storage of Django's connections (asgiref's thread-critical Local).
    storage = connections._connections._storage.__dict__  # type: ignore[attr-defined]
    saved = storage.copy()
    storage.clear()
    storage.update(hop.connections)
    loop = events._get_running_loop()
    events._set_running_loop(None)
    try:
        if error is not None:
            return hop.throw(error)
        return hop.switch(value) if hop.gr_frame is not None else hop.switch()  # not started yet: no argument
    finally:
        events._set_running_loop(loop)
        hop.connections = storage.copy()
        storage.clear()
        storage.update(saved)


async def _drive(hop: Hop, slots: asyncio.Semaphore, elsewhere: Callable[[], Awaitable[Any]]) -> Any:
    async with slots:
        if not idle_connection():
            _spare.holders.append(hop.connections)
            return await elsewhere()
        try:
            value: Any = None
            error: BaseException | None = None
            while True:
                waited = _enter(hop, value, error)
                if hop.dead:
                    return waited
                try:
                    value, error = await waited, None
                except BaseException as exc:  # noqa: BLE001  # thrown into the hop, where psycopg handles it
                    value, error = None, exc
        finally:
            _spare.holders.append(hop.connections)


async def run_on_loop(call: Callable[[], T], *, limit: int, elsewhere: Callable[[], Awaitable[T]]) -> T:
    """`call()` in a greenlet on this loop, in a copy of the caller's context; at most `limit`
    hops at once (each holds a pool connection while it runs); `elsewhere()` instead when the
    pool has no connection free. Like a thread hop, a hop whose caller is cancelled runs to its
    end: it is never interrupted between two statements."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(limit)
    context = contextvars.copy_context()
    hop = Hop(functools.partial(context.run, call), _spare.holders.pop() if _spare.holders else {})
    task: asyncio.Future[T] = asyncio.ensure_future(_drive(hop, slots, elsewhere))
    return await asyncio.shield(task)
