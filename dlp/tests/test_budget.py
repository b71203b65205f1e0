"""The per-request bounds on the prompt scan: the size cap and the time budget (budget.py)."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from dlp.budget import ScanBudgetError, checkpoint, scan_budget
from dlp.engine import PatternSpec, scanner_for
from dlp.inspection import Inspector
from dlp.packfile import all_pack_specs

CARD = PatternSpec(name="card", category="payment_card", expression=r"\b(?:\d[ -]?){13,16}\b", validator="card", action="block")


def _inspector(specs: list[PatternSpec]) -> Inspector:
    return Inspector(scanner_for(specs, "prompt"), scanner_for(specs, "response"), {})


def _chat(*texts: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text} for text in texts]}


def _hostile(size: int) -> str:
    # Digits and separators: every decoder builds a view of it, and the card validator runs
    # on thousands of candidates (issue 14: 7.5 MB of this took 34 s).
    rng = random.Random(14)
    return "".join(rng.choice("0123456789-., :|/") for _ in range(size))


def test_a_prompt_over_the_size_cap_is_refused_before_any_scanning() -> None:
    inspector = _inspector([CARD])
    with pytest.raises(ScanBudgetError) as caught:
        inspector.request(_chat("a" * 600, "b" * 600), max_bytes=1000)
    # The two texts plus the field names and the model, all of which DLP scans.
    assert (caught.value.reason, caught.value.limit) == ("size", 1000) and 1200 < (caught.value.measured or 0) < 1300


def test_the_size_counts_utf8_bytes_of_every_scanned_field() -> None:
    inspector = _inspector([CARD])
    body = {**_chat("é" * 300), "user": "x" * 401}  # 300 characters, 600 bytes, of content + 401 of user
    with pytest.raises(ScanBudgetError, match="size"):
        inspector.request(body, max_bytes=1001)
    rewritten, verdict = inspector.request(body, max_bytes=1100)
    assert rewritten is body and not verdict.findings


def test_a_scan_past_its_time_budget_stops_with_a_refusal() -> None:
    inspector = _inspector(all_pack_specs())
    with pytest.raises(ScanBudgetError) as caught:
        inspector.request(_chat(_hostile(300_000)), budget_ms=1)
    assert caught.value.reason == "time" and caught.value.limit == 1


def test_within_its_bounds_a_scan_still_finds_and_blocks() -> None:
    inspector = _inspector([CARD])
    _, verdict = inspector.request(_chat("card 4111 1111 1111 1111 please"), max_bytes=1000, budget_ms=60_000)
    assert verdict.blocked == ("payment_card",)


def test_outside_a_budget_checkpoints_never_raise_and_budgets_do_not_leak() -> None:
    checkpoint()
    with pytest.raises(ScanBudgetError), scan_budget(1):
        while True:
            checkpoint()
    checkpoint()  # the budget ended with its block
    with scan_budget(0):
        checkpoint()  # 0: no budget


def test_the_budget_counts_the_scans_own_cpu_time_not_time_spent_waiting() -> None:
    # A scan that waits (for the CPU, the GIL) is not charged for the wait: here it sleeps past
    # its budget and has still used almost none of it.
    with scan_budget(50):
        time.sleep(0.2)
        checkpoint()
