"""Waiting on a condition in tests: a deadline, never a timed assertion.

Work another thread or process does (a gateway worker saving a delivery, a row written after
the client left) is observed by polling for its effect; the deadline only bounds how long a
broken build takes to fail, so a slow or loaded machine waits longer instead of failing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.02) -> T:
    """Call `predicate` until it returns something truthy or `timeout` seconds pass; returns
    its last value, so the caller asserts on what it got (and a failure shows it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def stays_true(predicate: Callable[[], bool], *, seconds: float, interval: float = 0.02) -> bool:
    """Whether `predicate` holds throughout the next `seconds` (False as soon as it does not).

    For "nothing else happens" checks, which no event can end early: the window is explicit
    and the check fails the moment the unwanted thing shows up.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(interval)
    return predicate()
