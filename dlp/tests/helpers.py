"""Small helpers shared by the DLP tests."""

from __future__ import annotations

from dlp.engine import Scanner


def found(scanner: Scanner, text: str) -> list[tuple[str, str]]:
    """(category, matched original text) for each hit: what a test can read and compare."""
    return [(h.category, text[h.start : h.end]) for h in scanner.scan(text).hits]
