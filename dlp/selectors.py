"""Reads of the DLP policy: the compiled scanners the pipeline uses, and the admin's tester.

`dlp_policy()` is on every request's path, so it is a dict lookup almost always. Each worker
process holds one compiled policy and asks the database for the policy version at most once
per `SYNAPSE_DLP_RELOAD_SECONDS`; only when the version moved does it read the patterns and
overrides again and compile new scanners. A change therefore reaches every worker and every
replica within that interval, without a restart, and costs nothing while nothing changes.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from django.conf import settings
from django.db import transaction

from . import validators
from .engine import Direction, Hit, Scanner, compile_check, strongest
from .models import Pattern, PolicyVersion, TeamOverride

logger = logging.getLogger(__name__)

_NO_OVERRIDES: Mapping[str, str] = MappingProxyType({})

# (version, changed_at): see PolicyVersion for why the number alone is not enough.
_Stamp = tuple[int, datetime | None]


@dataclass(frozen=True, slots=True)
class DlpPolicy:
    prompt: Scanner  # enabled patterns applying to prompt|both
    response: Scanner  # enabled patterns applying to response|both
    overrides: Mapping[str, str]  # pattern name -> this team's action ('off' = skip), for Scanner.scan(overrides=...)
    version: int


@dataclass(slots=True)
class _Compiled:
    stamp: _Stamp
    prompt: Scanner
    response: Scanner
    by_team: dict[int, Mapping[str, str]]
    # One DlpPolicy per team seen, made on first use; a racing duplicate is harmless.
    policies: dict[int | None, DlpPolicy] = field(default_factory=dict)

    def policy(self, team_id: int | None) -> DlpPolicy:
        policy = self.policies.get(team_id)
        if policy is None:
            overrides = self.by_team.get(team_id, _NO_OVERRIDES) if team_id is not None else _NO_OVERRIDES
            policy = DlpPolicy(prompt=self.prompt, response=self.response, overrides=overrides, version=self.stamp[0])
            self.policies[team_id] = policy
        return policy


_lock = threading.Lock()
_compiled: _Compiled | None = None
_next_check = 0.0  # time.monotonic() after which the version is read again


def dlp_policy(*, team_id: int | None) -> DlpPolicy:
    """The policy in force for `team_id` (None: no team, no overrides). Sync, thread-safe."""
    compiled = _compiled
    if compiled is None or time.monotonic() >= _next_check:
        compiled = _refresh(compiled)
    return compiled.policy(team_id)


def dlp_policy_expire() -> None:
    """Make this process read the version on its next call, and again once the current
    transaction commits (the services call this after every change, so the console that made
    a change sees it at once; other processes see it within the reload interval)."""
    global _next_check
    _next_check = 0.0

    def expire() -> None:
        global _next_check
        _next_check = 0.0

    transaction.on_commit(expire)


def _refresh(current: _Compiled | None) -> _Compiled:
    global _compiled, _next_check
    # Another hop already checking: use the policy we hold (at most one interval old) rather
    # than queue behind its database read. With nothing held yet, read it too, never wait: a hop
    # on the event loop (synapse/loop_db.py) must not wait for a lock another hop of the same
    # thread holds across a statement (that hop cannot go on while this one blocks the loop).
    locked = _lock.acquire(blocking=False)
    if not locked and current is not None:
        return current
    try:
        if _compiled is not None and _compiled is not current and time.monotonic() < _next_check:
            return _compiled  # checked while we waited for the lock
        stamp = _read_stamp()
        if _compiled is None or _compiled.stamp != stamp:
            # Patterns are read after the stamp: if a change commits in between, we hold newer
            # patterns under the older stamp and simply rebuild once more on the next check.
            _compiled = _build(stamp)
        _next_check = time.monotonic() + settings.SYNAPSE["DLP_RELOAD_SECONDS"]
        return _compiled
    finally:
        if locked:
            _lock.release()


def _read_stamp() -> _Stamp:
    row = PolicyVersion.objects.filter(pk=PolicyVersion.SINGLETON).values_list("version", "changed_at").first()
    return (row[0], row[1]) if row else (0, None)


def _build(stamp: _Stamp) -> _Compiled:
    specs = []
    for pattern in Pattern.objects.filter(enabled=True).order_by("name"):
        # The services refuse such rows; one written past them (raw SQL, a removed validator)
        # is skipped loudly rather than taking every request down with it.
        reason = compile_check(pattern.expression)
        if reason is None and pattern.validator and validators.get(pattern.validator) is None:
            reason = f"unknown validator {pattern.validator!r}"
        if reason is not None:
            logger.error("dlp pattern %s skipped: %s", pattern.name, reason)
            continue
        specs.append(pattern.spec)
    by_team: dict[int, dict[str, str]] = {}
    for team_id, name, action in TeamOverride.objects.filter(pattern__enabled=True).values_list(
        "team_id", "pattern__name", "action"
    ):
        by_team.setdefault(team_id, {})[name] = action
    return _Compiled(
        stamp=stamp,
        prompt=Scanner([s for s in specs if s.applies(Direction.PROMPT)]),
        response=Scanner([s for s in specs if s.applies(Direction.RESPONSE)]),
        by_team={team_id: MappingProxyType(actions) for team_id, actions in by_team.items()},
    )


# ── the admin's pattern tester ───────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class TesterHit:
    category: str
    pattern: str
    action: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of the tested text; `hits` are the patterns covering it (none: plain text)."""

    text: str
    hits: tuple[TesterHit, ...]

    @property
    def action(self) -> str:
        return strongest(h.action for h in self.hits) or ""

    @property
    def label(self) -> str:
        return ", ".join(f"{h.category} ({h.pattern}: {h.action})" for h in self.hits)


@dataclass(frozen=True, slots=True)
class TesterResult:
    hits: tuple[TesterHit, ...]
    segments: tuple[Segment, ...]
    redacted: str
    action: str | None  # the outcome for the whole text: block > redact > alert
    version: int


def pattern_tester_run(*, text: str, direction: Direction = Direction.PROMPT, team_id: int | None = None) -> TesterResult:
    """What the gateway would do with `text` now: the hits, the text cut into highlighted
    segments, and the text after redaction. Nothing is logged or stored."""
    policy = dlp_policy(team_id=team_id)
    scanner = policy.response if direction == Direction.RESPONSE else policy.prompt
    result = scanner.scan(text, overrides=policy.overrides)
    hits = tuple(TesterHit(h.category, h.pattern, h.action, h.start, h.end) for h in result.hits)
    return TesterResult(
        hits=hits,
        segments=_segments(text, result.hits),
        redacted=result.redacted(),
        action=result.action,
        version=policy.version,
    )


def _segments(text: str, hits: list[Hit]) -> tuple[Segment, ...]:
    """Cut `text` at every hit boundary, so overlapping hits highlight correctly."""
    starts: dict[int, list[TesterHit]] = {}
    ends: dict[int, list[TesterHit]] = {}
    for h in hits:
        if h.end > h.start:
            hit = TesterHit(h.category, h.pattern, h.action, h.start, h.end)
            starts.setdefault(h.start, []).append(hit)
            ends.setdefault(h.end, []).append(hit)
    bounds = sorted({0, len(text), *starts, *ends})
    active: dict[TesterHit, None] = {}  # ordered set of the hits covering the current piece
    segments: list[Segment] = []
    for start, end in itertools.pairwise(bounds):
        for hit in ends.get(start, ()):
            active.pop(hit, None)
        for hit in starts.get(start, ()):
            active[hit] = None
        segments.append(Segment(text=text[start:end], hits=tuple(active)))
    return tuple(segments)
