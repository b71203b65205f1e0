"""What dlp/re2_spans.py relies on in google-re2's internals. If an upgrade fails here, fix
that one module (or move to the public `search`), not the engine."""

from __future__ import annotations

import re2

from dlp.re2_spans import compile_spans


def test_it_finds_the_private_members_it_relies_on() -> None:
    assert hasattr(re2, "_Anchor") and hasattr(re2._Anchor, "UNANCHORED")
    compiled = re2.compile("a")
    assert hasattr(compiled, "_regexp") and callable(compiled._regexp.Match)


def test_it_returns_the_match_and_each_group_as_byte_offsets() -> None:
    pattern = compile_spans(r"id (?P<value>\d+)(x)?", re2.Options())
    assert pattern.groupindex == {"value": 1}
    data = "né id 42 and id 7x".encode()  # é is two bytes: offsets are in bytes
    assert pattern.search(data, 0, len(data)) == [(4, 9), (7, 9), (-1, -1)]
    assert pattern.search(data, 9, len(data)) == [(14, 19), (17, 18), (18, 19)]


def test_it_honours_the_search_window_and_reports_no_match_as_minus_one() -> None:
    pattern = compile_spans(r"\d+", re2.Options())
    data = b"ab 123 cd"
    assert pattern.search(data, 0, 4) == [(3, 4)]  # endpos cuts the match short
    assert pattern.search(data, 6, len(data)) == [(-1, -1)]
