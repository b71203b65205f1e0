"""Writes to the DLP policy. The admin and `manage.py import_pack` both call these.

Every change validates the pattern (RE2 must compile it, the validator must exist), bumps the
policy version in the same transaction, and records a `policy_changed` audit event, so the
change, its record and the signal that makes every worker reload commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.models import EventType
from audit.services import audit_governance_event
from teams.models import Team

from .engine import PatternSpec
from .models import OverrideAction, Pattern, PolicyVersion, TeamOverride
from .packfile import Pack, load_pack
from .selectors import dlp_policy_expire

# What an edit may change. The name is the pattern's identity in audit rows and packs: fixed.
PATTERN_SETTINGS = ("category", "expression", "validator", "action", "severity", "applies_to", "enabled", "basis")


def policy_version_bump() -> int:
    """Advance the policy version inside the caller's transaction; returns the new number."""
    now = timezone.now()
    row, created = PolicyVersion.objects.get_or_create(pk=PolicyVersion.SINGLETON, defaults={"version": 1, "changed_at": now})
    if not created:
        # An UPDATE with F(): concurrent changes queue on the row lock, none is lost.
        PolicyVersion.objects.filter(pk=row.pk).update(version=F("version") + 1, changed_at=now)
        row.refresh_from_db(fields=["version"])
    dlp_policy_expire()
    return row.version


def _record(*, change: str, actor: AbstractBaseUser | None, team: Team | None = None, **detail: Any) -> None:
    version = policy_version_bump()
    audit_governance_event(
        event_type=EventType.POLICY_CHANGED,
        actor=actor,
        team=team,
        detail={"change": change, "policy_version": version, **detail},
    )


def _pattern_summary(pattern: Pattern) -> dict[str, Any]:
    return {
        "pattern": pattern.name,
        "category": pattern.category,
        "action": pattern.action,
        "applies_to": pattern.applies_to,
        "enabled": pattern.enabled,
        "pack": pattern.pack,
    }


@transaction.atomic
def pattern_create(
    *,
    name: str,
    category: str,
    expression: str,
    validator: str = "",
    action: str = Pattern._meta.get_field("action").default,
    severity: str = Pattern._meta.get_field("severity").default,
    applies_to: str = Pattern._meta.get_field("applies_to").default,
    enabled: bool = True,
    basis: str = "",
    actor: AbstractBaseUser | None = None,
) -> Pattern:
    """A hand-made pattern; refused (ValidationError) if RE2 cannot compile the expression."""
    pattern = Pattern(
        name=name.strip(),
        category=category,
        expression=expression,
        validator=validator,
        action=action,
        severity=severity,
        applies_to=applies_to,
        enabled=enabled,
        basis=basis,
    )
    pattern.full_clean()
    pattern.save()
    _record(change="pattern_created", actor=actor, expression=pattern.expression, **_pattern_summary(pattern))
    return pattern


@transaction.atomic
def pattern_update(*, pattern: Pattern, changes: dict[str, Any], actor: AbstractBaseUser | None = None) -> Pattern:
    """Change a pattern's settings (a pack's pattern too: re-applying the pack shows the drift)."""
    unknown = set(changes) - set(PATTERN_SETTINGS)
    if unknown:
        raise ValidationError({"__all__": f"not a pattern setting: {', '.join(sorted(unknown))}"})
    pattern = Pattern.objects.select_for_update().get(pk=pattern.pk)
    before = {name: getattr(pattern, name) for name in changes}
    for name, value in changes.items():
        setattr(pattern, name, value)
    pattern.full_clean()
    changed = {name: [before[name], getattr(pattern, name)] for name in changes if before[name] != getattr(pattern, name)}
    if not changed:
        return pattern
    pattern.save()
    _record(change="pattern_changed", actor=actor, pattern=pattern.name, pack=pattern.pack, changed=changed)
    return pattern


@transaction.atomic
def pattern_delete(*, pattern: Pattern, actor: AbstractBaseUser | None = None) -> None:
    """Remove a pattern and the team overrides of it. (To pause one, update `enabled`.)"""
    summary = _pattern_summary(pattern)
    overrides = pattern.overrides.count()
    pattern.delete()
    _record(change="pattern_deleted", actor=actor, overrides_removed=overrides, **summary)


@transaction.atomic
def team_override_set(
    *, team: Team, pattern: Pattern, action: str | None, actor: AbstractBaseUser | None = None
) -> TeamOverride | None:
    """Set the team's own action for `pattern` ('off' skips it); None returns to the pattern's action."""
    if action is not None and action not in OverrideAction.values:
        raise ValidationError({"action": f"must be one of {', '.join(OverrideAction.values)} (or none)"})
    existing = TeamOverride.objects.select_for_update().filter(team=team, pattern=pattern).first()
    before = existing.action if existing else None
    if before == action:
        return existing
    if action is None:
        assert existing is not None
        existing.delete()
        result = None
    elif existing is None:
        result = TeamOverride.objects.create(team=team, pattern=pattern, action=action)
    else:
        existing.action = action
        existing.save(update_fields=["action", "updated_at"])
        result = existing
    _record(
        change="team_override_set" if action else "team_override_removed",
        actor=actor,
        team=team,
        pattern=pattern.name,
        action=[before, action],
    )
    return result


# ── packs ──────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class PatternChange:
    name: str
    fields: dict[str, tuple[Any, Any]]  # field -> (installed, in the pack)


@dataclass(frozen=True, slots=True)
class PackDiff:
    """What applying a pack changes (or changed): the answer of `pack_apply`."""

    pack: str
    title: str
    version: int
    installed_version: int | None  # None: not installed before
    added: tuple[str, ...]
    changed: tuple[PatternChange, ...]
    disabled: tuple[str, ...]  # installed by an earlier version, gone from this one
    unchanged: tuple[str, ...]
    applied: bool  # False for a dry run

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.changed or self.disabled) or self.installed_version != self.version

    def summary(self) -> str:
        before = f"v{self.installed_version}" if self.installed_version is not None else "not installed"
        if not self.has_changes:
            return f"pack {self.pack} v{self.version} is installed and unchanged ({len(self.unchanged)} patterns): nothing to do"
        verb = "applied" if self.applied else "would apply (dry run)"
        return (
            f"pack {self.pack} ({before} → v{self.version}) {verb}: {len(self.added)} added, "
            f"{len(self.changed)} changed, {len(self.disabled)} disabled, {len(self.unchanged)} unchanged"
        )

    def lines(self) -> list[str]:
        """One line per pattern that moves (the command prints them, the admin shows them)."""
        lines = [f"+ {name}" for name in self.added]
        for change in self.changed:
            lines.extend(f"~ {change.name}: {field} {old!r} → {new!r}" for field, (old, new) in change.fields.items())
        lines.extend(f"- {name} (disabled: no longer in the pack)" for name in self.disabled)
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "pack": self.pack,
            "version": self.version,
            "installed_version": self.installed_version,
            "applied": self.applied,
            "added": list(self.added),
            "changed": {c.name: {k: list(v) for k, v in c.fields.items()} for c in self.changed},
            "disabled": list(self.disabled),
            "unchanged": list(self.unchanged),
        }


def _pack_values(spec: PatternSpec, basis: str) -> dict[str, Any]:
    return {
        "category": spec.category,
        "expression": spec.expression,
        "validator": spec.validator,
        "action": spec.action,
        "severity": spec.severity,
        "applies_to": spec.applies_to,
        "basis": basis,
        "enabled": True,  # applying a pack turns its patterns on
    }


def _plan(pack: Pack, installed: dict[str, Pattern]) -> tuple[list[str], list[PatternChange], list[str], list[str]]:
    added: list[str] = []
    changed: list[PatternChange] = []
    unchanged: list[str] = []
    for item in pack.patterns:
        row = installed.get(item.spec.name)
        if row is None:
            added.append(item.spec.name)
            continue
        values = _pack_values(item.spec, item.basis)
        fields = {name: (getattr(row, name), value) for name, value in values.items() if getattr(row, name) != value}
        if fields:
            changed.append(PatternChange(name=item.spec.name, fields=fields))
        else:
            unchanged.append(item.spec.name)
    in_pack = {item.spec.name for item in pack.patterns}
    disabled = [name for name, row in installed.items() if name not in in_pack and row.enabled]
    return added, changed, sorted(disabled), unchanged


@transaction.atomic
def pack_apply(*, name_or_path: str, actor: AbstractBaseUser | None = None, dry_run: bool = False) -> PackDiff:
    """Install or upgrade a policy pack (a shipped name, or a pack file's path).

    The pack's file is the truth for its patterns: missing ones are added, edited ones are set
    back, ones the new version dropped are disabled (not deleted, so team overrides survive a
    round trip). Re-applying the same version changes nothing and records nothing. Raises
    `PackError` for an unreadable pack, ValidationError if a hand-made pattern holds a name
    the pack needs.
    """
    pack = load_pack(name_or_path)
    names = [item.spec.name for item in pack.patterns]
    clashes = list(Pattern.objects.filter(name__in=names).exclude(pack=pack.name).values_list("name", flat=True))
    if clashes:
        raise ValidationError(
            {"__all__": f"pattern name(s) taken by patterns outside pack {pack.name}: {', '.join(sorted(clashes))}"}
        )
    rows = Pattern.objects.filter(pack=pack.name)
    # Two applies of one pack at once would both plan against the same rows: the second waits.
    installed = {p.name: p for p in (rows if dry_run else rows.select_for_update())}
    versions = [p.pack_version for p in installed.values() if p.pack_version is not None]
    installed_version = max(versions) if versions else None
    added, changed, disabled, unchanged = _plan(pack, installed)
    diff = PackDiff(
        pack=pack.name,
        title=pack.title,
        version=pack.version,
        installed_version=installed_version,
        added=tuple(added),
        changed=tuple(changed),
        disabled=tuple(disabled),
        unchanged=tuple(unchanged),
        applied=not dry_run,
    )
    if dry_run or not diff.has_changes:
        return diff

    by_name = {item.spec.name: item for item in pack.patterns}
    for name in added:
        item = by_name[name]
        row = Pattern(name=name, pack=pack.name, pack_version=pack.version, **_pack_values(item.spec, item.basis))
        row.full_clean()
        row.save()
    for change in changed:
        row = installed[change.name]
        for field_name, (_, value) in change.fields.items():
            setattr(row, field_name, value)
        row.pack_version = pack.version
        row.full_clean()
        row.save()
    Pattern.objects.filter(pack=pack.name, name__in=disabled).update(enabled=False, updated_at=timezone.now())
    Pattern.objects.filter(pack=pack.name, name__in=unchanged).update(pack_version=pack.version)
    detail = diff.as_dict()
    del detail["unchanged"], detail["applied"]  # the audit row says what moved, not what stayed
    _record(change="pack_applied", actor=actor, source=pack.source, unchanged=len(unchanged), **detail)
    return diff
