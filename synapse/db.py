"""Database work from async code: one thread hop per call, connection returned afterwards.

The hops run on a long-lived, bounded pool of threads per worker process (SYNAPSE_DB_THREADS,
default the database pool's size): a thread per request — asgiref's thread-sensitive executor
inside a `ThreadSensitiveContext` — costs a thread start on the event loop and a join at the
request's end. Hops of one request may run on different pool threads; each hop returns its
connection to the psycopg pool, so no state is carried between hops on a thread anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import AsyncToSync, sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection
from psycopg_pool.base import AttemptWithBackoff

from .loop_db import run_on_loop
from .otel import stage_span
from .pg_connection import BridgedConnection

# psycopg's pool retries a lost database after 1 s, doubling each time: after a minute's outage
# the next try can be half a minute away, and every request until then fails. Retry every half
# second instead (a refused connect costs nothing), so the first request after recovery — which
# waits up to SYNAPSE_DB_POOL_TIMEOUT for a connection — finds one.
AttemptWithBackoff.INITIAL_DELAY = 0.5
AttemptWithBackoff.DELAY_BACKOFF = 1.0

P = ParamSpec("P")
T = TypeVar("T")


def _released(fn: Callable[P, T]) -> Callable[P, T]:
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            with stage_span(fn.__name__):  # the pipeline's hops are spans of the request's trace
                return fn(*args, **kwargs)
        finally:
            # The /v1 handler skips Django's per-request signals (each a thread hop), so the
            # connection goes back to the pool here. Inside an atomic block — a test case —
            # the connection belongs to the caller and stays open.
            if not connection.in_atomic_block:
                close_old_connections()

    return run


class DbThreads:
    """The worker's database threads: one queue, threads started as the load needs them (up to
    `size`), each hop's result set on its asyncio future straight from the thread.

    Not `loop.run_in_executor` on a `ThreadPoolExecutor`: its concurrent future, the chaining
    onto an asyncio future, and the executor's locks and semaphore cost ~55-95 µs of CPU a hop
    here, against ~7-25 µs for this (measured side by side, uvloop, 2 cores).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._queue: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]]]
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        # Threads free for a new hop, each counted once: a hop takes one (or starts a thread),
        # so two hops queued at once never both count on the same idle thread.
        self._idle = 0

    def submit(self, loop: asyncio.AbstractEventLoop, call: Callable[[], T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, call))
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif self._started < self._size:
                self._started += 1
                threading.Thread(target=self._run, name=f"synapse-db_{self._started - 1}", daemon=True).start()
        return future

    def _run(self) -> None:
        while True:
            loop, future, call = self._queue.get()
            try:
                result = call()
            except BaseException as exc:  # noqa: BLE001  # handed to the awaiting coroutine
                _settle_soon(loop, _set_exception, future, exc)
            else:
                _settle_soon(loop, _set_result, future, result)
            del loop, future, call  # nothing kept alive while waiting for the next hop
            with self._lock:
                self._idle += 1


def _settle_soon(loop: asyncio.AbstractEventLoop, settle: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed (the worker is exiting): nobody waits
        loop.call_soon_threadsafe(settle, *args)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.cancelled():  # the awaiting request was cancelled meanwhile
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(exc)


_threads: DbThreads | None = None
_threads_lock = threading.Lock()


# Connections a worker's other database threads hold: the audit writer (audit/group_commit.py)
# and the anomaly evaluations (synapse/anomalies.py).
OTHER_DB_THREADS = 2


@functools.cache  # read on every hop (the loop's bound); settings do not change in a running worker
def db_threads() -> int:
    """How many database threads a worker keeps: SYNAPSE_DB_THREADS, else what the pool's max
    size leaves for them beside the audit writer and the anomaly thread (a thread more than
    the pool has connections would only wait for one)."""
    configured = os.environ.get("SYNAPSE_DB_THREADS", "").strip()
    if configured:
        return max(1, int(configured))
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    size = int(pool.get("max_size", 20)) if isinstance(pool, dict) else 20
    return max(1, size - OTHER_DB_THREADS)


def threads() -> DbThreads:
    global _threads
    if _threads is None:
        with _threads_lock:
            if _threads is None:
                _threads = DbThreads(db_threads())
    return _threads


def on_caller_thread() -> bool:
    """Whether database work runs on the calling thread: async code called from sync code
    (Django's sync test client, a management command) must see that thread's transaction."""
    return getattr(AsyncToSync.executors, "current", None) is not None


def released(fn: Callable[P, T]) -> Callable[P, T]:
    """`fn` for a worker thread outside the request's hops: its connection goes back to the pool."""
    return _released(fn)


async def run_db(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    # Called from sync code through async_to_sync (Django's sync test client, a management
    # command), the hop runs on that calling thread, as asgiref's thread-sensitive mode does:
    # a test's transaction lives on that thread's connection and the hop must see it.
    if on_caller_thread():
        return await sync_to_async(_released(fn))(*args, **kwargs)
    call = functools.partial(_released(fn), *args, **kwargs)
    if on_loop():
        return await run_on_loop(call, limit=db_threads(), elsewhere=functools.partial(_on_thread, call))
    return await _on_thread(call)


async def _on_thread(call: Callable[[], T]) -> T:
    # Straight onto the pool, in a copy of the request's context (its trace, its DLP budget):
    # what sync_to_async does for a thread-insensitive call, without its bookkeeping, which
    # cost a loaded worker more than the hand-off itself.
    context = contextvars.copy_context()
    return await threads().submit(asyncio.get_running_loop(), functools.partial(context.run, call))


_on_loop: bool | None = None


def on_loop() -> bool:
    """Whether hops run on the event loop (synapse/loop_db.py): PostgreSQL through the pool of
    bridged connections, counters on the database, and SYNAPSE_DB_ON_LOOP on."""
    global _on_loop
    if _on_loop is None:
        database = settings.DATABASES["default"]
        pool = database.get("OPTIONS", {}).get("pool")
        _on_loop = (
            bool(settings.SYNAPSE.get("DB_ON_LOOP", True))
            and database["ENGINE"] == "django.db.backends.postgresql"
            and isinstance(pool, dict)
            and pool.get("connection_class") is BridgedConnection
            and settings.CACHES["counters"]["BACKEND"] == "synapse.cache.CounterCache"
        )
    return _on_loop
