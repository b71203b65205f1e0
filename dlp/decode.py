"""Decoded views: the text as the model would read it, for the scanner to match too.

A model reads `\\u0034`, `%34`, `&#52;` and `&#x34;` as "4", reads `name [at] corp [dot] com`
as an address, reads "4111,1111|1111:1111" and "4111 -- 1111 ..." as a card number, reads a
letter O among digits as a zero, and decodes base64 or hex (wrapped over lines, or one inside
the other) when asked to. The raw scan (engine.py) sees none of these, so `views()` builds
extra scan views of the regions where they occur:

- **Character views** (exact offsets): JSON string escapes, percent-encoding, HTML entities,
  bracketed e-mail obfuscations, separators from any punctuation or whitespace class between
  digit groups (canonicalised to one space when the patterns' own separator set would not
  accept them), and O/o read as 0 next to digits. Each view character maps back to the
  original characters it came from (an escape sequence, a separator run), so a match found
  here redacts exactly those characters.
- **Encoded views** (no exact offsets): runs of base64 (line-wrapped runs included) and of
  hex, decoded when the result is printable UTF-8, recursively (depth `MAX_DEPTH`, at most
  `MAX_DECODED` characters per text). A match inside cannot be mapped to original
  characters, so every view character maps to the whole encoded run: the run is redacted.

Views are built only around what triggers them (one RE2 pass over the text, nothing else on
clean prose), each over a region with `_MARGIN` characters of context either side, so cost
follows the number of triggers, not the text's length.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import html
import re
from collections.abc import Iterator, Mapping

import re2

from .budget import EVERY, checkpoint
from .engine import Hit, Scanner, ScanResult
from .normalize import Normalized, normalize

MAX_DEPTH = 3
MAX_DECODED = 1 << 20
_MARGIN = 64

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False

# What makes a character view worth building.
_CHAR_TRIGGER = re2.compile(
    r"\\u[0-9A-Fa-f]{4}|%[0-9A-Fa-f]{2}|&#?[A-Za-z0-9]{1,8};"
    r"|[\[({<]\s*(?i:at|dot)\s*[\])}>]"
    r"|[0-9][ \t]*(?:[,|+:;()*#~=]|--)[ \t(]*[0-9]|[0-9][ \t]{4,}[0-9]"
    r"|[0-9][Oo]+[0-9]|[0-9][^\w\n]{0,3}[Oo]{2}|[Oo]{2}[^\w\n]{0,3}[0-9]|[0-9]{2}[Oo](?:[^A-Za-z]|\z)"
    r"|(?:^|[^A-Za-z0-9])[Oo][0-9]{2}"
    r"|[A-Z0-9]{2,8}(?:[-.:|, ][A-Z0-9]{2,8}){3,}"
    # At the very end, digits then separators or an O: a stream's next delta may go on.
    r"|[0-9][^\w\n]{1,4}\z|[0-9][^\w\n]{0,3}[Oo]\z",
    _OPTIONS,
)
# Encoded runs: base64 (possibly wrapped: line breaks between chunks of 4+) and hex.
_ENCODED = re2.compile(
    r"[A-Za-z0-9+/]{16,}={0,2}(?:[ \t]*\r?\n[ \t]*[A-Za-z0-9+/]{4,}={0,2})+"  # wrapped base64
    r"|[A-Za-z0-9+/]{16,}={0,2}"
    r"|(?:\\x[0-9A-Fa-f]{2}){8,}"
    r"|(?:0x)?[0-9A-Fa-f]{16,}"
    r"|[0-9A-Fa-f]{2}(?:[ :][0-9A-Fa-f]{2}){7,}",
    _OPTIONS,
)

# The separators the built-in patterns accept between digits (builtin.SEP): no view needed.
_PATTERN_SEPARATORS = frozenset(" \t\n\r.-/\\_")
_JSON_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "/": "/", "b": "", "f": ""}
_TOKEN = re.compile(
    r"\\u(?P<u>[0-9A-Fa-f]{4})|\\(?P<j>[nrt\"\\/bf])|(?P<pct>(?:%[0-9A-Fa-f]{2})+)|(?P<ent>&#?[A-Za-z0-9]{1,8};)"
    r"|(?P<at>[ \t]*[\[({<][ \t]*(?i:at)[ \t]*[\])}>][ \t]*)|(?P<dot>[ \t]*[\[({<][ \t]*(?i:dot)[ \t]*[\])}>][ \t]*)"
)
# A trailing escape that the next delta may complete (streams hold it back).
_PARTIAL = re.compile(r"(?:%[0-9A-Fa-f]?|\\(?:u[0-9A-Fa-f]{0,3})?|&#?[A-Za-z0-9]{0,8}|[\[({<][ \t]*(?i:a|at|d|do|dot)?[ \t]*)\Z")


def partial_escape_start(text: str) -> int:
    """Where an escape left unfinished at the end of `text` starts (len(text) if none)."""
    match = _PARTIAL.search(text, max(0, len(text) - 16))
    return match.start() if match is not None else len(text)


# ── character views ──


def _decode_chars(text: str, offset: int) -> tuple[list[str], list[int], list[int]]:
    """Decode escapes, entities and e-mail obfuscations in `text`; per output character, the
    original span (offsets shifted by `offset`)."""
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []

    def emit(value: str, start: int, end: int) -> None:
        for ch in value:
            chars.append(ch)
            starts.append(offset + start)
            ends.append(offset + end)

    def plain(start: int, end: int) -> None:
        for i in range(start, end):
            if not i % EVERY:
                checkpoint()
            chars.append(text[i])
            starts.append(offset + i)
            ends.append(offset + i + 1)

    pos = 0
    for match in _TOKEN.finditer(text):
        checkpoint()
        plain(pos, match.start())
        pos = match.end()
        kind = match.lastgroup
        raw = match.group()
        if kind == "u":
            value = chr(int(match.group("u"), 16))
            emit("" if 0xD800 <= ord(value) < 0xE000 else value, match.start(), match.end())
        elif kind == "j":
            emit(_JSON_ESCAPES[match.group("j")], match.start(), match.end())
        elif kind == "pct":
            # Each %XX maps to its own three characters when it is one ASCII byte.
            data = bytes(int(raw[i + 1 : i + 3], 16) for i in range(0, len(raw), 3))
            if data.isascii():
                for i, byte in enumerate(data):
                    emit(chr(byte), match.start() + 3 * i, match.start() + 3 * i + 3)
            else:
                emit(data.decode("utf-8", "replace"), match.start(), match.end())
        elif kind == "ent":
            emit(html.unescape(raw), match.start(), match.end())
        elif kind == "at":
            emit("@", match.start(), match.end())
        else:
            emit(".", match.start(), match.end())
    plain(pos, len(text))
    return chars, starts, ends


_ZERO_RUN = re.compile(r"(?<![A-Za-z])[0-9Oo](?:[^\w\n]{0,3}[0-9Oo])+(?![A-Za-z])")
# Groups of letters and digits with one separator between them, as a token is written to
# slip past a pattern ("AKIA-Z7Q4-MB2K-..."; key alphabets are upper case): a view without
# the separators.
_GROUPS = re.compile(r"(?<![A-Za-z0-9])[A-Z0-9]{2,8}(?:[-.:|, ][A-Z0-9]{2,8}){3,}(?![A-Za-z0-9])")


def _digit_view(chars: list[str], starts: list[int], ends: list[int]) -> tuple[list[str], list[int], list[int]]:
    """O/o inside a run of digits becomes 0; separator runs between digits that the patterns
    would not accept become one space; separators inside a run of short letter-and-digit
    groups are dropped."""
    text = "".join(chars)
    if "O" in text or "o" in text:
        zeroed = list(text)
        for count, run in enumerate(_ZERO_RUN.finditer(text)):
            if not count % 256:
                checkpoint()
            value = run.group()
            if sum(c.isdigit() for c in value) >= 4:
                for i in range(run.start(), run.end()):
                    if zeroed[i] in "Oo":
                        zeroed[i] = "0"
        text = "".join(zeroed)
    joins = _digit_joins(text)
    dropped: set[int] = set()
    for count, run in enumerate(_GROUPS.finditer(text)):
        if not count % 256:
            checkpoint()
        value = run.group()
        if any(c.isalpha() for c in value) and any(c.isdigit() for c in value) and len(value) >= 16:
            dropped.update(run.start() + i for i, c in enumerate(value) if c in "-.:|, ")
    out: list[str] = []
    out_starts: list[int] = []
    out_ends: list[int] = []
    i, n = 0, len(text)
    while i < n:
        if not i % EVERY:
            checkpoint()
        ch = text[i]
        if i in dropped:
            i += 1
            continue
        if i in joins:
            end = joins[i]
            out.append(" ")
            out_starts.append(starts[i])
            out_ends.append(ends[end - 1])
            i = end
            continue
        out.append(ch)
        out_starts.append(starts[i])
        out_ends.append(ends[i])
        i += 1
    return out, out_starts, out_ends


_DIGIT_RUN = re.compile(r"[0-9]+(?:(?:[^\w\n]{1,4}|_)[0-9]+)+(?:[^\w\n]{1,4}\Z)?|[0-9]+[^\w\n]{1,4}\Z")


def _digit_joins(text: str) -> dict[int, int]:
    """Separator runs (start -> end) to read as one space: between digit groups shaped like a
    split number (every group 3+ digits, or 3-2-4), when the patterns' own separators would not
    accept them. Lists of short numbers ("6, 26, 36, 94") keep their commas."""
    joins: dict[int, int] = {}
    for count, run in enumerate(_DIGIT_RUN.finditer(text)):
        if not count % 256:
            checkpoint()
        value = run.group()
        sizes = [len(group) for group in re.findall(r"[0-9]+", value)]
        # In a stream the last group may still grow.
        checked = sizes[:-1] if run.end() == len(text) and value[-1].isdigit() else sizes
        if not (all(size >= 3 for size in checked) or sizes == [3, 2, 4]):
            continue
        for sep in re.finditer(r"[^\w\n]{1,4}|_", value):
            separator = sep.group()
            if len(separator) > 3 or any(c not in _PATTERN_SEPARATORS for c in separator):
                joins[run.start() + sep.start()] = run.start() + sep.end()
    return joins


def _regions(text: str, matches: Iterator[tuple[int, int]]) -> list[tuple[int, int]]:
    regions: list[tuple[int, int]] = []
    for count, (start, end) in enumerate(matches):
        if not count % 1024:
            checkpoint()
        start, end = max(0, start - _MARGIN), min(len(text), end + _MARGIN)
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(regions[-1][1], end))
        else:
            regions.append((start, end))
    return regions


def _char_views(text: str) -> list[Normalized]:
    views = []
    for start, end in _regions(text, (m.span() for m in _CHAR_TRIGGER.finditer(text))):
        checkpoint()
        chars, starts, ends = _digit_view(*_decode_chars(text[start:end], start))
        decoded = "".join(chars)
        if decoded == text[start:end]:
            continue
        view = normalize(decoded)
        if view.starts is None or view.ends is None:
            views.append(Normalized(original=text, text=view.text, starts=starts, ends=ends))
        else:
            views.append(
                Normalized(
                    original=text,
                    text=view.text,
                    starts=[starts[i] for i in view.starts],
                    ends=[ends[j - 1] for j in view.ends],
                )
            )
    return views


# ── encoded views ──


def _printable(data: bytes) -> str | None:
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not decoded or sum(1 for ch in decoded if ch.isprintable() or ch in "\t\n\r") < 0.95 * len(decoded):
        return None
    return decoded


def _decode_run(run: str) -> str | None:
    compact = "".join(run.split())
    if compact.startswith("\\x"):
        compact = compact.replace("\\x", "")
    elif compact.startswith("0x"):
        compact = compact[2:]
    compact = compact.replace(":", "")
    candidates: list[bytes] = []
    if re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", compact):
        candidates.append(binascii.unhexlify(compact))
    body = compact.rstrip("=")
    if len(body) % 4 != 1 and re.fullmatch(r"[A-Za-z0-9+/]+", body):
        with contextlib.suppress(binascii.Error, ValueError):
            candidates.append(base64.b64decode(body + "=" * (-len(body) % 4), validate=True))
    for data in candidates:
        if (decoded := _printable(data)) is not None:
            return decoded
    return None


def _encoded_views(text: str, depth: int, budget: list[int]) -> list[Normalized]:
    views: list[Normalized] = []
    if depth >= MAX_DEPTH:
        return views
    for match in _ENCODED.finditer(text):
        checkpoint()
        if budget[0] <= 0:
            break
        decoded = _decode_run(match.group())
        if decoded is None:
            continue
        budget[0] -= len(decoded)
        start, end = match.span()
        # Every character of what the run hides maps to the whole run.
        for inner in [normalize(decoded), *_char_views(decoded), *_encoded_views(decoded, depth + 1, budget)]:
            size = len(inner.text)
            views.append(Normalized(original=text, text=inner.text, starts=[start] * size, ends=[end] * size))
    return views


def _trigger_set() -> re2.Set:
    # One automaton pass answers "is there anything to decode at all" (clean text stops here).
    triggers = re2.Set.SearchSet(_OPTIONS)
    triggers.Add(_CHAR_TRIGGER.pattern)
    triggers.Add(_ENCODED.pattern)
    triggers.Compile()
    return triggers


_TRIGGERS = _trigger_set()
_SURROGATE = re.compile("[\ud800-\udfff]")


def views(text: str) -> list[Normalized]:
    """The extra scan views of `text` (none for text with nothing to decode)."""
    if len(text) < 4:
        return []
    try:
        data = text.encode("utf-8")
        safe = text
    except UnicodeEncodeError:
        # A lone surrogate (JSON allows "\ud800") cannot be encoded for RE2; U+FFFD keeps offsets.
        safe = _SURROGATE.sub("\ufffd", text)
        data = safe.encode("utf-8")
    found = _TRIGGERS.Match(data) or ()
    out: list[Normalized] = []
    if 0 in found:
        out.extend(_char_views(safe))
    if 1 in found:
        out.extend(_encoded_views(safe, 0, [MAX_DECODED]))
    return out if safe is text else [dataclasses.replace(view, original=text) for view in out]


def scan(scanner: Scanner, text: str, *, overrides: Mapping[str, str] | None = None) -> ScanResult:
    """`scanner.scan(text)` plus what the decoded views of `text` reveal, as one result."""
    result = scanner.scan(text, overrides=overrides)
    if not text or not len(scanner):
        return result
    checkpoint()
    extra = views(text)
    if not extra:
        return result
    return ScanResult(text, merge_hits(result.hits, extra, scanner, overrides))


def merge_hits(hits: list[Hit], extra: list[Normalized], scanner: Scanner, overrides: Mapping[str, str] | None) -> list[Hit]:
    """`hits` and the hits in each extra view, once each (a view repeats the raw hits it
    contains), ordered by position."""
    seen = {(h.pattern, h.start, h.end) for h in hits}
    merged = list(hits)
    for view in extra:
        checkpoint()
        for hit in scanner.scan_view(view, overrides=overrides).hits:
            if (hit.pattern, hit.start, hit.end) not in seen and not _inside(hit, merged):
                seen.add((hit.pattern, hit.start, hit.end))
                merged.append(hit)
    merged.sort(key=lambda h: (h.start, h.end))
    return merged


def _inside(hit: Hit, hits: list[Hit]) -> bool:
    """Already found by the same pattern over the same or a wider span."""
    return any(h.pattern == hit.pattern and h.start <= hit.start and hit.end <= h.end for h in hits)
