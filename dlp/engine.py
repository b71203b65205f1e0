"""The scanner: one compiled set of patterns, applied to text in linear time.

How a scan works:

1. `normalize()` builds the scan view (fast path: plain ASCII is its own view).
2. One pass of an RE2 set over the view's UTF-8 bytes answers "which patterns occur at all".
   On clean text that pass is the only work done.
3. Only for the patterns that occur, RE2 finds the spans, one match at a time; the pattern's
   validator (if any) confirms each candidate or picks the real value out of it.
4. Runs of base64 are decoded once and the decoded text goes through steps 1-3; a hit there
   redacts the whole encoded run.
5. Spans are mapped back to the original text. Actions are decided per hit (a team's override
   wins over the pattern's own action), and the request's outcome is the strongest action:
   block > redact > alert.

RE2 guarantees time linear in the input for every expression, so a hostile prompt cannot make
a pattern backtrack; an expression RE2 cannot compile (look-around, back-references) is refused
by `compile_check()` with RE2's reason.

Nothing here ever hands the matched value outward: `Finding` carries category, pattern name,
action and count; `Hit` carries offsets for the redaction step only.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import re2

from . import validators
from .budget import checkpoint
from .normalize import Normalized, normalize
from .prefix import widened_prefix_expression
from .re2_spans import SpanSearch, compile_spans

logger = logging.getLogger(__name__)


class Action(StrEnum):
    """What a pattern does to a match: the one definition (the models' choices label these)."""

    BLOCK = "block"
    REDACT = "redact"
    ALERT = "alert"
    OFF = "off"  # only as a per-team override: the team does not apply the pattern


class Direction(StrEnum):
    """Which text a pattern scans; a finding's direction is PROMPT or RESPONSE."""

    PROMPT = "prompt"
    RESPONSE = "response"
    BOTH = "both"


PATTERN_ACTIONS = (Action.BLOCK, Action.REDACT, Action.ALERT)  # OFF is an override, never a pattern's own
_RANK = {Action.ALERT: 1, Action.REDACT: 2, Action.BLOCK: 3}


# Memory budget of the automaton behind each RE2 set. When it fills, RE2 flushes and rebuilds
# its state cache (slower, still linear), so this bounds memory per worker, not correctness.
_SET_MAX_MEM = 16 << 20
_RE_MAX_MEM = 16 << 20

# Base64 runs worth decoding: 16 characters, or 12 with padding (an SSN with dashes is 11
# bytes, "MTIzLTQ1LTY3ODk="). Shorter runs are mostly words and identifiers.
_BASE64_RUN = r"[A-Za-z0-9+/]{12,}={1,2}|[A-Za-z0-9+/]{16,}|[A-Za-z0-9_\-]{16,}"
_BASE64_PREFIX = r"[A-Za-z0-9+/_\-]*={0,2}"
_BASE64_TRIGGER = -1
_LETTERS = bytes(range(65, 91)) + bytes(range(97, 123))

# The "which patterns occur" pass uses at most this many RE2 sets (see Scanner.__init__).
MAX_SETS = 3
# Prefix expressions per regex in the stream hold-back search (see viable_start).
_VIABLE_GROUP = 8


def _options(max_mem: int = _RE_MAX_MEM) -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = max_mem
    return options


def _reason(exc: re2.error) -> str:
    reason = exc.args[0] if exc.args else "invalid expression"
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


def compile_check(expression: str) -> str | None:
    """None when RE2 accepts `expression`, otherwise RE2's reason (shown to the admin)."""
    if not expression:
        return "the expression is empty"
    try:
        compiled = re2.compile(expression, _options())
    except re2.error as exc:
        return _reason(exc)
    # An expression that can match nothing at all would "hit" every text at every position.
    for probe in ("", " ", "x", "0"):
        match = compiled.search(probe)
        if match is not None and match.end() == match.start():
            return "the expression can match the empty string, so it would match everywhere"
    return None


@dataclass(frozen=True, slots=True)
class PatternSpec:
    """One pattern as the engine sees it (the `Pattern` model is its editable form)."""

    name: str
    category: str
    expression: str
    validator: str = ""
    action: str = Action.REDACT
    severity: str = "medium"
    applies_to: str = Direction.BOTH

    def applies(self, direction: str) -> bool:
        return self.applies_to in (Direction.BOTH, direction)


class Hit(NamedTuple):
    """One confirmed match, as offsets into the scanned (original) text. Internal only.

    A named tuple rather than a dataclass: a PII-dense text makes thousands per scan.
    """

    pattern: str
    category: str
    action: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Finding:
    """What goes into the audit trail: never the value."""

    category: str
    pattern: str
    action: str
    count: int


def strongest(actions: Iterable[str]) -> str | None:
    ranked = [a for a in actions if a in _RANK]
    return max(ranked, key=lambda action: _RANK[Action(action)]) if ranked else None


def redaction_token(category: str) -> str:
    return f"[REDACTED:{category}]"


def redact(text: str, hits: Iterable[Hit]) -> str:
    """Replace every redact/block hit in `text`; overlapping hits become one token (the
    category of the one that starts first)."""
    spans = sorted((h.start, -h.end, h.category) for h in hits if h.action in (Action.REDACT, Action.BLOCK))
    if not spans:
        return text
    out: list[str] = []
    cursor = 0
    current: tuple[int, int, str] | None = None
    for start, neg_end, category in spans:
        end = -neg_end
        if current is not None and start < current[1]:
            current = (current[0], max(current[1], end), current[2])
            continue
        if current is not None:
            out.append(text[cursor : current[0]])
            out.append(redaction_token(current[2]))
            cursor = current[1]
        current = (start, end, category)
    assert current is not None
    out.append(text[cursor : current[0]])
    out.append(redaction_token(current[2]))
    out.append(text[current[1] :])
    return "".join(out)


class ScanResult:
    """The hits in one piece of text and what they add up to."""

    __slots__ = ("hits", "text")

    def __init__(self, text: str, hits: list[Hit]) -> None:
        self.text = text
        self.hits = hits

    def __repr__(self) -> str:  # never the text
        return f"<ScanResult action={self.action!r} hits={len(self.hits)}>"

    @property
    def action(self) -> str | None:
        return strongest(h.action for h in self.hits)

    @property
    def blocked(self) -> bool:
        return self.action == Action.BLOCK

    def categories(self, action: str | None = None) -> list[str]:
        seen = dict.fromkeys(h.category for h in self.hits if action is None or h.action == action)
        return list(seen)

    def findings(self) -> list[Finding]:
        counts = Counter((h.category, h.pattern, h.action) for h in self.hits)
        return [Finding(category=c, pattern=p, action=a, count=n) for (c, p, a), n in counts.items()]

    def redacted(self) -> str:
        return redact(self.text, self.hits)


@dataclass(frozen=True, slots=True)
class _Compiled:
    spec: PatternSpec
    search: SpanSearch
    group: int  # index of the `value` group, 0 for the whole match
    validator: validators.Validator | None


# A raw hit inside the scan view: (compiled expression index, byte start, byte end).
_RawHit = tuple[int, int, int]


class Scanner:
    """A compiled, immutable scanner over `specs`; cheap to share between threads."""

    def __init__(self, specs: Sequence[PatternSpec], *, decode_base64: bool = True) -> None:
        self.specs = tuple(specs)
        self.decode_base64 = decode_base64
        # Packs reuse built-in expressions under their own names and actions; each distinct
        # (expression, validator) is matched once and its hits fan out to every spec using it.
        compiled: list[_Compiled] = []
        self._fanout: list[list[int]] = []
        seen: dict[tuple[str, str], int] = {}
        for spec_index, spec in enumerate(self.specs):
            key = (spec.expression, spec.validator)
            if key in seen:
                self._fanout[seen[key]].append(spec_index)
                continue
            reason = compile_check(spec.expression)
            if reason is not None:
                raise ValueError(f"pattern {spec.name!r}: {reason}")
            validator = None
            if spec.validator:
                validator = validators.get(spec.validator)
                if validator is None:
                    raise ValueError(f"pattern {spec.name!r}: unknown validator {spec.validator!r}")
            pattern = compile_spans(spec.expression, _options())
            seen[key] = len(compiled)
            compiled.append(
                _Compiled(spec=spec, search=pattern.search, group=pattern.groupindex.get("value", 0), validator=validator)
            )
            self._fanout.append([spec_index])
        self._compiled = tuple(compiled)

        # The "which patterns occur" pass: one RE2 set per group of distinct expressions. One
        # set over everything is fastest on clean text, but its automaton is the product of all
        # patterns, and input made to visit many of its states (random digits, separators and
        # hex) builds a new state per byte: 0.2 MB/s. Each extra set costs a pass over clean
        # text. MAX_SETS = 3 keeps clean text above 100 MB/s with every pack enabled and that
        # worst case near 1 MB/s (bench/dlp_bench.py has the figures).
        expressions = list(dict.fromkeys(item.spec.expression for item in compiled))
        self._by_expression = [[i for i, item in enumerate(compiled) if item.spec.expression == e] for e in expressions]
        entries: list[tuple[str, int]] = [(e, i) for i, e in enumerate(expressions)]
        if compiled and decode_base64:
            entries.append((_BASE64_RUN, _BASE64_TRIGGER))
        group_size = max(1, -(-len(entries) // MAX_SETS))
        self._sets: list[tuple[re2.Set, list[int]]] = []
        for start in range(0, len(entries), group_size):
            group = entries[start : start + group_size]
            pattern_set = re2.Set.SearchSet(_options(_SET_MAX_MEM))
            for expression, _ in group:
                pattern_set.Add(expression)
            pattern_set.Compile()
            self._sets.append((pattern_set, [index for _, index in group]))
        self._base64 = compile_spans(_BASE64_RUN, _options()).search

        prefixes = [widened_prefix_expression(item.spec.expression) for item in compiled]
        # A pattern whose prefixes we cannot derive makes every suffix a possible match start:
        # streams then hold back the whole window (see stream.py).
        self.holds_everything = any(p is None for p in prefixes)
        alternatives = list(dict.fromkeys(p for p in prefixes if p))
        if decode_base64:
            alternatives.append(_BASE64_PREFIX)
        # Small unions: one alternation of every prefix expression makes an automaton RE2
        # cannot keep in memory, and it falls back to its slow NFA (~0.5 ms per delta).
        self._viable = [
            compile_spans("(?:" + "|".join(alternatives[i : i + _VIABLE_GROUP]) + r")\z", _options()).search
            for i in range(0, len(alternatives), _VIABLE_GROUP)
        ]

    def __len__(self) -> int:
        return len(self.specs)

    # --- scanning ---------------------------------------------------------------------------

    def scan(self, text: str, *, overrides: Mapping[str, str] | None = None) -> ScanResult:
        """Find every confirmed hit in `text` with its action (team overrides applied)."""
        if not text or not self._sets:
            return ScanResult(text, [])
        return self.scan_view(normalize(text), overrides=overrides)

    def scan_view(self, view: Normalized, *, overrides: Mapping[str, str] | None = None) -> ScanResult:
        """`scan()` for a caller that already holds the normalised view (the stream window)."""
        text = view.original
        if not text or not self._sets:
            return ScanResult(text, [])
        hits: list[Hit] = []
        for index, start, end in self._view_hits(view, allow_base64=self.decode_base64):
            for spec_index in self._fanout[index]:
                spec = self.specs[spec_index]
                action = spec.action
                if overrides and spec.name in overrides:
                    action = overrides[spec.name]
                    if action == Action.OFF:
                        continue
                hits.append(Hit(pattern=spec.name, category=spec.category, action=action, start=start, end=end))
        hits.sort(key=lambda h: (h.start, h.end))
        return ScanResult(text, hits)

    def _view_hits(self, view: Normalized, *, allow_base64: bool) -> list[_RawHit]:
        """Hits as (pattern index, start, end) in the *original* text of `view`."""
        data = view.text.encode("utf-8")
        raw: list[_RawHit] = []
        encoded_runs = False
        for pattern_set, indexes in self._sets:
            checkpoint()
            for local in pattern_set.Match(data) or ():
                expression = indexes[local]
                if expression == _BASE64_TRIGGER:
                    encoded_runs = allow_base64
                    continue
                for index in self._by_expression[expression]:
                    raw.extend(self._pattern_hits(index, data))
        if encoded_runs:
            raw.extend(self._encoded_hits(data))
        return self._to_original(view, data, raw)

    def _pattern_hits(self, index: int, data: bytes) -> list[_RawHit]:
        compiled = self._compiled[index]
        search = compiled.search
        found: list[_RawHit] = []
        pos, length, count = 0, len(data), 0
        while pos <= length:
            if not count % 256:
                checkpoint()  # each candidate may run a validator: a hostile text has thousands
            count += 1
            spans = search(data, pos, length)
            match_start, match_end = spans[0]
            if match_start < 0:
                break
            value_start, value_end = spans[compiled.group]
            if value_start < 0:
                value_start, value_end = match_start, match_end
            resume = value_end
            if compiled.validator is None:
                found.append((index, value_start, value_end))
            else:
                confirmed = self._validate(compiled, data, value_start, value_end)
                found.extend((index, s, e) for s, e in confirmed)
                if confirmed:
                    # A greedy candidate can run into the next value ("DE89... and FR14..."):
                    # look again right after the last real one.
                    resume = confirmed[-1][1]
            # Resume at the end of the value, not of the match: a pattern's trailing context
            # character may be the next match's leading one ("4111...1111,5500...0004").
            if resume <= match_start:
                resume = match_start + 1
            if resume <= pos:
                resume = pos + 1
            while resume < length and (data[resume] & 0xC0) == 0x80:
                resume += 1  # never start inside a UTF-8 sequence
            pos = resume
        return found

    def _validate(self, compiled: _Compiled, data: bytes, start: int, end: int) -> list[tuple[int, int]]:
        value = data[start:end].decode("utf-8")
        assert compiled.validator is not None
        try:
            spans = compiled.validator(value)
        except Exception:
            # A validator bug must not let data through: treat the candidate as real.
            logger.exception("dlp validator %s failed; treating the match as a hit", compiled.spec.validator)
            return [(start, end)]
        if value.isascii():
            return [(start + s, start + e) for s, e in spans]
        return [(start + len(value[:s].encode()), start + len(value[:e].encode())) for s, e in spans]

    def _encoded_hits(self, data: bytes) -> list[_RawHit]:
        """Decode each base64 run once and scan the text it hides (no further decoding)."""
        found: list[_RawHit] = []
        for start, end in _finditer(self._base64, data):
            checkpoint()
            run = data[start:end]
            if not run.translate(None, _LETTERS):
                continue  # a long word or identifier: base64 of text nearly always has a digit
            decoded = _decode_base64(run)
            if decoded is None:
                continue
            for index, _, _ in self._view_hits(normalize(decoded), allow_base64=False):
                found.append((index, start, end))
        return found

    @staticmethod
    def _to_original(view: Normalized, data: bytes, raw: list[_RawHit]) -> list[_RawHit]:
        if not raw:
            return raw
        # In an ASCII view bytes are characters; otherwise convert the offsets we need.
        chars = None if len(data) == len(view.text) else _byte_to_char(data, {o for _, s, e in raw for o in (s, e)})
        out: list[_RawHit] = []
        for index, start, end in raw:
            if chars is not None:
                start, end = chars[start], chars[end]
            original_start, original_end = view.to_original(start, end)
            out.append((index, original_start, original_end))
        return out

    # --- streaming support ------------------------------------------------------------------

    def viable_start(self, view_text: str) -> int:
        """The earliest index in `view_text` from which the rest could still grow into a match
        (len(view_text) when nothing could)."""
        if not view_text:
            return 0
        if self.holds_everything:
            return 0
        if not self._viable:
            return len(view_text)
        data = view_text.encode("utf-8")
        # Every prefix expression matches the empty suffix, so each search finds something.
        start = min(search(data, 0, len(data))[0][0] for search in self._viable)
        if len(data) == len(view_text):
            return start
        return len(data[:start].decode("utf-8"))


def _finditer(search: SpanSearch, data: bytes) -> Iterable[tuple[int, int]]:
    pos, length = 0, len(data)
    while pos < length:
        spans = search(data, pos, length)
        start, end = spans[0]
        if start < 0:
            return
        yield start, end
        pos = end if end > start else start + 1


def _decode_base64(run: bytes) -> str | None:
    """The text a base64 run encodes, if it is printable UTF-8; None for binary or non-base64."""
    body = run.rstrip(b"=")
    if len(body) % 4 == 1:
        return None
    padded = body + b"=" * (-len(body) % 4)
    altchars = b"-_" if (b"-" in body or b"_" in body) else None
    try:
        decoded = base64.b64decode(padded, altchars=altchars, validate=True)
        text = decoded.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\t\n\r")
    if printable < 0.95 * len(text):
        return None
    return text


def _byte_to_char(data: bytes, offsets: set[int]) -> dict[int, int]:
    """Character index of each UTF-8 byte offset (offsets lie on character boundaries)."""
    result: dict[int, int] = {}
    previous_byte = 0
    previous_char = 0
    for offset in sorted(offsets):
        previous_char += len(data[previous_byte:offset].decode("utf-8"))
        previous_byte = offset
        result[offset] = previous_char
    return result


def scanner_for(specs: Iterable[PatternSpec], direction: str, *, decode_base64: bool = True) -> Scanner:
    """A scanner over the specs that apply to `direction` ("prompt" or "response")."""
    return Scanner([s for s in specs if s.applies(direction)], decode_base64=decode_base64)
