"""Read a policy pack (dlp/packs/<name>.yaml or any path) into pattern specs.

A pack is a versioned file: which patterns a regulation needs, with which action, and why
(`basis` cites the article or section). An entry either `use`s a built-in pattern by name
(optionally overriding action, severity, applies_to and the name it is installed under) or
defines its own `name`, `category`, `expression` and `validator`. Installed patterns are
named `<pack>.<name>`, so packs never overwrite each other: when two packs cover the same
data, both rules run and the strictest action wins.

Pure: no database. `dlp.services.pack_apply` writes the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import validators
from .builtin import BY_NAME
from .engine import PATTERN_ACTIONS, Action, Direction, PatternSpec, compile_check
from .prefix import stream_hold_problem

PACK_DIR = Path(__file__).resolve().parent / "packs"
SEVERITIES = ("low", "medium", "high", "critical")
_ENTRY_KEYS = {"use", "name", "category", "expression", "validator", "action", "severity", "applies_to", "basis"}


class PackError(ValueError):
    """The pack file is unreadable or wrong; the message says where."""


@dataclass(frozen=True, slots=True)
class PackPattern:
    spec: PatternSpec
    basis: str


@dataclass(frozen=True, slots=True)
class Pack:
    name: str
    version: int
    title: str
    description: str
    patterns: tuple[PackPattern, ...]
    source: str


def pack_names() -> list[str]:
    """The packs shipped in dlp/packs/."""
    return sorted(p.stem for p in PACK_DIR.glob("*.yaml"))


def load_pack(name_or_path: str) -> Pack:
    """A shipped pack by name (`gdpr`), or a pack file by path."""
    path = PACK_DIR / f"{name_or_path}.yaml" if name_or_path in pack_names() else Path(name_or_path)
    if not path.is_file():
        raise PackError(f"no pack named {name_or_path!r} (shipped: {', '.join(pack_names())}) and no such file")
    return parse_pack(path.read_text(encoding="utf-8"), source=str(path))


def _text(entry: dict[str, Any], key: str, where: str, default: str = "") -> str:
    value = entry.get(key, default)
    if not isinstance(value, str):
        raise PackError(f"{where}: '{key}' must be a string")
    return value.strip()


def _entry(pack: str, index: int, entry: Any) -> PackPattern:
    where = f"patterns[{index}]"
    if not isinstance(entry, dict):
        raise PackError(f"{where}: must be a mapping")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise PackError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    base: PatternSpec | None = None
    if "use" in entry:
        base = BY_NAME.get(_text(entry, "use", where))
        if base is None:
            raise PackError(f"{where}: no built-in pattern named {entry['use']!r}")
        if {"category", "expression", "validator"} & set(entry):
            raise PackError(f"{where}: a 'use' entry takes its category, expression and validator from the built-in")
    name = _text(entry, "name", where, base.name if base else "")
    if not name:
        raise PackError(f"{where}: needs 'use' (a built-in) or 'name'")
    category = base.category if base else _text(entry, "category", where)
    expression = base.expression if base else _text(entry, "expression", where)
    validator = base.validator if base else _text(entry, "validator", where)
    if not category or not expression:
        raise PackError(f"{where} ({name}): a custom pattern needs 'category' and 'expression'")
    reason = compile_check(expression)
    if reason is not None:
        raise PackError(f"{where} ({name}): RE2 refuses the expression: {reason}")
    if validator and validators.get(validator) is None:
        raise PackError(f"{where} ({name}): unknown validator {validator!r} (known: {', '.join(validators.names())})")
    action = _text(entry, "action", where, base.action if base else Action.REDACT)
    if action not in PATTERN_ACTIONS:
        raise PackError(f"{where} ({name}): action must be one of {', '.join(PATTERN_ACTIONS)}")
    severity = _text(entry, "severity", where, base.severity if base else "medium")
    if severity not in SEVERITIES:
        raise PackError(f"{where} ({name}): severity must be one of {', '.join(SEVERITIES)}")
    applies_to = _text(entry, "applies_to", where, Direction.BOTH)
    if applies_to not in tuple(Direction):
        raise PackError(f"{where} ({name}): applies_to must be prompt, response or both")
    # Only answers stream: a prompt-only pattern never decides a hold-back.
    if applies_to != Direction.PROMPT and (reason := stream_hold_problem(expression)) is not None:
        raise PackError(f"{where} ({name}): streams cannot be scanned with the expression: {reason}")
    spec = PatternSpec(
        name=f"{pack}.{name}",
        category=category.upper(),
        expression=expression,
        validator=validator,
        action=action,
        severity=severity,
        applies_to=applies_to,
    )
    return PackPattern(spec=spec, basis=_text(entry, "basis", where))


def parse_pack(text: str, *, source: str = "<string>") -> Pack:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PackError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise PackError(f"{source}: a pack is a mapping with 'pack', 'version' and 'patterns'")
    name = document.get("pack")
    version = document.get("version")
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise PackError(f"{source}: 'pack' must be a short name (letters, digits, '-', '_')")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise PackError(f"{source}: 'version' must be a positive integer")
    entries = document.get("patterns")
    if not isinstance(entries, list) or not entries:
        raise PackError(f"{source}: 'patterns' must be a non-empty list")
    patterns = tuple(_entry(name, i, e) for i, e in enumerate(entries))
    names = [p.spec.name for p in patterns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PackError(f"{source}: pattern names must be unique; repeated: {', '.join(duplicates)}")
    return Pack(
        name=name,
        version=version,
        title=str(document.get("title") or name),
        description=" ".join(str(document.get("description") or "").split()),
        patterns=patterns,
        source=source,
    )


def all_pack_specs() -> list[PatternSpec]:
    """Every pattern of every shipped pack (what the benchmark scans with)."""
    return [p.spec for name in pack_names() for p in load_pack(name).patterns]
