"""Small helpers shared by the DLP tests."""

from __future__ import annotations

from typing import Any

from dlp.engine import Scanner


def found(scanner: Scanner, text: str) -> list[tuple[str, str]]:
    """(category, matched original text) for each hit: what a test can read and compare."""
    return [(h.category, text[h.start : h.end]) for h in scanner.scan(text).hits]


def policy_events() -> list[dict[str, Any]]:
    """The `policy_changed` audit events, oldest first: (actor, team, detail) as recorded."""
    from audit.models import AuditEvent, EventType

    rows = AuditEvent.objects.filter(event_type=EventType.POLICY_CHANGED).order_by("seq")
    return [{"actor": r.actor, "team": r.team_name, **r.detail} for r in rows]


def policy_version() -> int:
    from dlp.models import PolicyVersion

    row = PolicyVersion.objects.filter(pk=PolicyVersion.SINGLETON).first()
    return row.version if row else 0
