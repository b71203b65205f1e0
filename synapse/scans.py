"""Large prompts are scanned on a small pool of their own, not on the database threads.

A prompt's DLP scan usually rides the request's first database hop (synapse/pipeline.py). A
large one (over `SYNAPSE_DLP_LARGE_PROMPT_BYTES`) can take its whole CPU budget there; every
such scan is Python holding the GIL much of the time, and several at once leave the event loop
and the small requests' hops waiting for it. So large prompts queue for this worker's
`SYNAPSE_DLP_SCAN_THREADS` threads (default 1): at most that many large scans run at once per
worker, whatever arrives, and the wait is the large prompt's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

SCAN_NICENESS = 10
_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _lower_priority() -> None:
    # Linux gives each thread its own nice value: a large scan then yields the CPU to the
    # event loop, the database threads and PostgreSQL when they have work.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SCAN_NICENESS)


def _scan_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                threads = max(1, int(os.environ.get("SYNAPSE_DLP_SCAN_THREADS", "1") or 1))
                _executor = ThreadPoolExecutor(threads, thread_name_prefix="synapse-scan", initializer=_lower_priority)
    return _executor


async def run_scan(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_scan_executor(), functools.partial(fn, *args, **kwargs))
