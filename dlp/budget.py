"""Per-request bounds on DLP work: a size cap before scanning, a time budget while scanning.

RE2 keeps every pattern linear, but linear is not small: a prompt of a few megabytes of digits
and separators builds decoded views character by character (decode.py) and confirms thousands
of card-number candidates, tens of seconds of Python on one core. Two bounds make such a
prompt cost its own request and nothing more:

- **size**: a prompt whose scanned text exceeds `SYNAPSE_DLP_MAX_SCAN_BYTES` (UTF-8) is not
  scanned at all. It cannot be vouched for, so the pipeline refuses it (fail closed).
- **time**: the scan runs under a budget of CPU time (`SYNAPSE_DLP_TIME_BUDGET_MS`), measured on
  the scanning thread's own clock (`time.thread_time`), not the wall clock: a small prompt whose
  scan waits for the CPU behind a hostile one is not refused for the wait. The engine's and the
  decoders' loops call `checkpoint()` between patterns, matches, views and every few thousand
  characters; past the budget it raises `ScanBudgetError`, the scan stops, and the pipeline
  refuses the request. RE2's own passes run between checkpoints (they release the GIL, so
  they slow no other request), which is why the size cap bounds them.

The deadline lives in a context variable, set around one request's scan on the thread that
runs it; code that scans outside `scan_budget()` (answers, streams, the console's tester) runs
unbounded as before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# (deadline on the thread's CPU clock, the budget in ms) of the scan running in this context.
_deadline: ContextVar[tuple[float, int] | None] = ContextVar("dlp_scan_deadline", default=None)
# Loops over characters check the clock once per this many iterations.
EVERY = 4096


class ScanBudgetError(Exception):
    """The scan was not done, or not finished, within the request's bounds."""

    def __init__(self, reason: str, *, limit: int, measured: int | None = None) -> None:
        super().__init__(f"DLP scan refused ({reason}): limit {limit}")
        self.reason = reason  # "size" (bytes) or "time" (milliseconds)
        self.limit = limit
        self.measured = measured


@contextmanager
def scan_budget(milliseconds: int) -> Iterator[None]:
    """Scans inside this block raise `ScanBudgetError` once this thread has spent `milliseconds`
    of CPU time in it (0: no budget)."""
    token = _deadline.set((time.thread_time() + milliseconds / 1000, milliseconds) if milliseconds > 0 else None)
    try:
        yield
    finally:
        _deadline.reset(token)


def checkpoint() -> None:
    """Raise `ScanBudgetError` if the current scan is past its deadline; free outside a budget."""
    budget = _deadline.get()
    if budget is not None and time.thread_time() > budget[0]:
        raise ScanBudgetError("time", limit=budget[1])


def size_check(texts: Iterator[str], *, limit: int) -> int:
    """The UTF-8 size of `texts`; raises `ScanBudgetError` as soon as it passes `limit` (0: no cap)."""
    total = 0
    for text in texts:
        total += len(text.encode("utf-8", "surrogatepass"))
        if limit and total > limit:
            raise ScanBudgetError("size", limit=limit, measured=total)
    return total
