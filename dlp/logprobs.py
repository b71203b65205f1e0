"""Logprobs tokens: redacted or dropped exactly where the text they spell is.

A chat answer with `logprobs` carries its text twice: in the message (or delta) and as the
list of tokens in `logprobs.content` (and `logprobs.refusal`), each with its UTF-8 `bytes` and
the `top_logprobs` alternatives. Redacting only the text would leave the value readable in the
tokens, so the tokens' own text (their concatenation) is scanned with the same patterns, and
each token that overlaps a redacted span is rewritten: the token where the span starts becomes
the redaction marker, the others become empty; `bytes` follows the new text and
`top_logprobs` of those positions is dropped (an alternative there could spell the value). A
block stops the tokens with the text: in a stream they are held back by the same window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .engine import Action, Hit, redaction_token
from .stream import StreamGuard

_REDACTING = (Action.REDACT, Action.BLOCK)


def _token(entry: Any) -> str:
    return entry["token"] if isinstance(entry, dict) and isinstance(entry.get("token"), str) else ""


def _rewritten(entry: Any, text: str) -> Any:
    if not isinstance(entry, dict):
        return entry
    return {**entry, "token": text, "bytes": list(text.encode("utf-8")), "top_logprobs": []}


def redact_tokens(entries: Sequence[Any], hits: Sequence[Hit], offset: int = 0) -> list[Any]:
    """`entries` with the tokens overlapping a redacting hit rewritten. Hit offsets are into
    the concatenated token text, starting `offset` characters before the first entry."""
    spans = sorted((h.start, h.end, h.category) for h in hits if h.action in _REDACTING)
    if not spans:
        return list(entries)
    out: list[Any] = []
    position = offset
    for entry in entries:
        token = _token(entry)
        start, end = position, position + len(token)
        position = end
        overlapping = [s for s in spans if s[0] < end and s[1] > start] if token else []
        if not overlapping:
            out.append(entry)
            continue
        # The marker goes on the token where each span begins; the rest of the span is dropped.
        marker = "".join(redaction_token(category) for s_start, _, category in overlapping if start <= s_start < end)
        out.append(_rewritten(entry, marker))
    return out


class TokenGuard:
    """Holds back streamed logprobs entries with the hold-back window of the text they spell.

    The tokens' text goes through its own `StreamGuard`; an entry is released once all of its
    text has been released by that guard, rewritten if a redacted span overlaps it.
    """

    def __init__(self, guard: StreamGuard) -> None:
        self.guard = guard
        self.blocked: tuple[str, ...] = ()
        self._pending: list[Any] = []
        self._pending_start = 0  # offset of the first pending entry in the whole token text
        self._released = 0  # characters of the token text the guard has released
        self._spans: list[Hit] = []  # redacting hits, offsets in the whole token text

    def feed(self, entries: list[Any]) -> list[Any]:
        self._pending.extend(entries)
        return self._take(self.guard.feed("".join(_token(e) for e in entries)), final=False)

    def flush(self) -> list[Any]:
        return self._take(self.guard.flush(), final=True)

    def _take(self, step: Any, *, final: bool) -> list[Any]:
        if step.blocked:
            self.blocked = step.categories
            self._pending = []
            return []
        base = self._released
        self._spans.extend(h._replace(start=h.start + base, end=h.end + base) for h in step.hits if h.action in _REDACTING)
        self._released += step.consumed
        ready: list[Any] = []
        end = self._pending_start
        for entry in self._pending:
            if not final and end + len(_token(entry)) > self._released:
                break
            end += len(_token(entry))
            ready.append(entry)
        if not ready:
            return []
        out = redact_tokens(ready, self._spans, self._pending_start)
        del self._pending[: len(ready)]
        self._pending_start = end
        self._spans = [s for s in self._spans if s.end > end]
        return out
