"""Database work from async code: one thread hop per call, connection returned afterwards."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
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


async def run_db(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    return await sync_to_async(_released(fn))(*args, **kwargs)
