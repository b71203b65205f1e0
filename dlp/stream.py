"""Scan a streamed response without letting any part of a match reach the client.

One `StreamGuard` per stream of text: per choice's content, per tool call's arguments
(`StreamGuards` keeps them apart by key). Feed it each delta; it returns the part that is safe
to send, already redacted, and keeps back only what could still be the start of a match:

- After each delta the buffer is scanned whole. The earliest position from which the rest of
  the buffer could still grow into a match of any pattern is found with each pattern's
  prefix expression (prefix.py); everything before it is released, unless a match that is
  already there straddles that point, in which case the match is held whole. In ordinary
  prose that is the last word or two, so time to first token barely moves.
- The hold-back is bounded by `window` characters (default `DEFAULT_WINDOW` = 1024, about 250
  tokens). Every built-in pattern either matches within that length or already matches on a
  prefix shorter than it (a private key's header), so a secret split across any chunk boundary
  is caught before any of it is sent. If a *redact* match keeps growing past the window it
  cannot be rewritten in one piece any more, and the stream is stopped as a block instead.
- `block` stops the stream: the step says so and nothing more is ever released; the caller
  sends an SSE error event (no [DONE]).
- `flush()` at the end of the stream releases the rest, redacted.

A little already-sent text (`CONTEXT` characters) is kept as left context so that word
boundaries and leading-context characters are judged as in a non-streamed scan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

from . import decode
from .engine import Action, Finding, Hit, Scanner, redact
from .normalize import normalize

DEFAULT_WINDOW = 1024
CONTEXT = 64


@dataclass(frozen=True, slots=True)
class StreamStep:
    """What one delta (or the flush) produced: text to send now, or a stop."""

    text: str = ""
    blocked: bool = False
    categories: tuple[str, ...] = ()  # the blocking categories, when blocked
    # For callers that release something other than the text (logprobs tokens): how many
    # characters of the original were released, and the redacted spans within them.
    consumed: int = 0
    hits: tuple[Hit, ...] = ()


@dataclass(slots=True)
class StreamGuard:
    scanner: Scanner
    overrides: Mapping[str, str] | None = None
    window: int = DEFAULT_WINDOW
    _pending: str = ""
    _context: str = ""
    _blocked: tuple[str, ...] | None = None
    _counts: Counter = field(default_factory=Counter)

    @property
    def blocked(self) -> bool:
        return self._blocked is not None

    @property
    def held(self) -> int:
        """How many characters are currently held back (for tests and metrics)."""
        return len(self._pending)

    def findings(self) -> list[Finding]:
        return [Finding(category=c, pattern=p, action=a, count=n) for (c, p, a), n in self._counts.items()]

    def feed(self, delta: str) -> StreamStep:
        if self._blocked is not None:
            return StreamStep(blocked=True, categories=self._blocked)
        if not delta:
            return StreamStep()
        self._pending += delta
        return self._release(final=False)

    def flush(self) -> StreamStep:
        if self._blocked is not None:
            return StreamStep(blocked=True, categories=self._blocked)
        if not self._pending:
            return StreamStep()
        return self._release(final=True)

    def _release(self, *, final: bool) -> StreamStep:
        base = len(self._context)
        text = self._context + self._pending
        view = normalize(text)
        extra = decode.views(text)  # what the model would decode (decode.py)
        found = self.scanner.scan_view(view, overrides=self.overrides).hits
        if extra:
            found = decode.merge_hits(found, extra, self.scanner, self.overrides)
        # Hits wholly inside the context were dealt with when that text was released.
        hits = [h for h in found if h.end > base]

        blocking = [h for h in hits if h.action == Action.BLOCK]
        if blocking:
            return self._stop(blocking)

        if final:
            cut = len(text)
        else:
            cut = view.original_index(self.scanner.viable_start(view.text))
            # An escape the next delta could complete is held, and a decoded view of what
            # comes before it may hold from further back.
            partial = decode.partial_escape_start(text)
            for decoded in extra if partial == len(text) else decode.views(text[:partial]):
                if decoded.ends and decoded.ends[-1] == partial:
                    cut = min(cut, decoded.original_index(self.scanner.viable_start(decoded.text)))
            cut = max(min(cut, partial), base)
            cut = _before_straddlers(hits, cut, base)
            limit = len(text) - self.window
            if cut < limit:
                cut = limit
                growing = [h for h in hits if h.start < cut < h.end]
                if any(h.action == Action.REDACT for h in growing):
                    return self._stop([h for h in growing if h.action == Action.REDACT])
                for hit in growing:  # alerts cannot be held longer; record them now
                    self._record(hit)

        released = [h for h in hits if h.end <= cut]
        for hit in released:
            self._record(hit)
        shifted = [
            Hit(pattern=h.pattern, category=h.category, action=h.action, start=max(h.start, base) - base, end=h.end - base)
            for h in released
        ]
        out = redact(text[base:cut], shifted)
        self._context = text[max(0, cut - CONTEXT) : cut]
        self._pending = text[cut:]
        return StreamStep(text=out, consumed=cut - base, hits=tuple(shifted))

    def _stop(self, hits: list[Hit]) -> StreamStep:
        for hit in hits:
            self._record(hit)
        self._blocked = tuple(dict.fromkeys(h.category for h in hits))
        self._pending = ""
        return StreamStep(blocked=True, categories=self._blocked)

    def _record(self, hit: Hit) -> None:
        self._counts[(hit.category, hit.pattern, hit.action)] += 1


def _before_straddlers(hits: list[Hit], cut: int, floor: int) -> int:
    """Move `cut` back to the start of any hit it would split (repeatedly: holding one hit
    can put the cut inside an earlier, overlapping one)."""
    moved = True
    while moved:
        moved = False
        for hit in hits:
            if hit.start < cut < hit.end and max(hit.start, floor) < cut:
                cut = max(hit.start, floor)
                moved = True
    return cut


class StreamGuards:
    """One guard per independent text stream of a response (choice content, tool arguments)."""

    def __init__(self, scanner: Scanner, *, overrides: Mapping[str, str] | None = None, window: int = DEFAULT_WINDOW):
        self._scanner = scanner
        self._overrides = overrides
        self._window = window
        self._guards: dict[Hashable, StreamGuard] = {}

    def guard(self, key: Hashable) -> StreamGuard:
        guard = self._guards.get(key)
        if guard is None:
            guard = StreamGuard(self._scanner, overrides=self._overrides, window=self._window)
            self._guards[key] = guard
        return guard

    def feed(self, key: Hashable, delta: str) -> StreamStep:
        return self.guard(key).feed(delta)

    def flush(self) -> dict[Hashable, StreamStep]:
        return {key: guard.flush() for key, guard in self._guards.items()}

    @property
    def blocked(self) -> bool:
        return any(g.blocked for g in self._guards.values())

    def findings(self) -> list[Finding]:
        counts: Counter = Counter()
        for guard in self._guards.values():
            for f in guard.findings():
                counts[(f.category, f.pattern, f.action)] += f.count
        return [Finding(category=c, pattern=p, action=a, count=n) for (c, p, a), n in counts.items()]
