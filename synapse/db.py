"""Database work from async code: one thread hop per call, connection returned afterwards.

The hops run on a long-lived, bounded pool of threads per worker process (SYNAPSE_DB_THREADS,
default the database pool's size): a thread per request — asgiref's thread-sensitive executor
inside a `ThreadSensitiveContext` — costs a thread start on the event loop and a join at the
request's end. Hops of one request may run on different pool threads; each hop returns its
connection to the psycopg pool, so no state is carried between hops on a thread anyway.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from asgiref.sync import AsyncToSync, sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection
from psycopg_pool.base import AttemptWithBackoff

from .otel import stage_span

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


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


# Connections a worker's other database threads hold: the audit writer (audit/group_commit.py)
# and the anomaly evaluations (synapse/anomalies.py).
OTHER_DB_THREADS = 2


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


def executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=db_threads(), thread_name_prefix="synapse-db")
    return _executor


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
    # Straight onto the pool, in a copy of the request's context (its trace, its DLP budget):
    # what sync_to_async does for a thread-insensitive call, without its bookkeeping, which
    # cost a loaded worker more than the hand-off itself.
    context = contextvars.copy_context()
    call = functools.partial(context.run, _released(fn), *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor(), call)
