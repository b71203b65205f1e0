"""The one module that reaches into google-re2's internals: match offsets without Match objects.

The public API (`re2.compile(...).search`) wraps every hit in a Match object; the engine wants
only byte offsets, thousands per PII-dense text. The compiled expression the wrapper holds
(`_regexp`, a `re2._re2.RE2`) answers `Match(anchor, text, pos, endpos)` with the (start, end)
of the match and of each group, (-1, -1) where there is none — the wrapper's own fast path.
`re2.Set` is public and needs nothing from here.

`dlp/tests/test_re2_spans.py` checks exactly what this relies on, so a google-re2 upgrade that
changes it fails there, by name, instead of somewhere inside a scan.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import re2

# (text, pos, endpos) -> [(start, end) of the match, then of each group]; (-1, -1) when absent.
SpanSearch = Callable[[bytes, int, int], list[tuple[int, int]]]

_UNANCHORED = re2._Anchor.UNANCHORED


@dataclass(frozen=True, slots=True)
class SpanPattern:
    search: SpanSearch
    groupindex: Mapping[str, int]


def compile_spans(expression: str, options: re2.Options) -> SpanPattern:
    """Compile `expression` for unanchored byte-offset searches (raises re2.error like re2.compile)."""
    compiled = re2.compile(expression, options)
    search: SpanSearch = functools.partial(compiled._regexp.Match, _UNANCHORED)
    return SpanPattern(search=search, groupindex=compiled.groupindex)
