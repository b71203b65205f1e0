"""Every governance event a service records is a declared event type, so the console can
name it and filter on it (a value outside the choices shows raw and has no filter entry)."""

from __future__ import annotations

import re
from pathlib import Path

from audit.models import EventType
from conftest import ROOT

LITERAL = re.compile(r"""event_type\s*=\s*["']([a-z_]+)["']""")
MEMBER = re.compile(r"event_type\s*=\s*EventType\.([A-Z_]+)")
SKIP = {".venv", "migrations", "tests", "node_modules"}


def recorded_event_types() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        if SKIP & set(path.relative_to(ROOT).parts):
            continue
        text = path.read_text(encoding="utf-8")
        for value in LITERAL.findall(text):
            found.setdefault(value, path)
        for member in MEMBER.findall(text):
            found.setdefault(EventType[member].value, path)
    return found


def test_every_recorded_event_type_is_declared() -> None:
    recorded = recorded_event_types()
    assert {"key_issued", "key_revoked", "routing_imported", "request"} <= set(recorded)  # the scan finds them
    undeclared = {value: str(path.relative_to(ROOT)) for value, path in recorded.items() if value not in EventType.values}
    assert undeclared == {}
