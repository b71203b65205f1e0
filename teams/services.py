"""Writes for teams and keys. The admin and the management commands both call these."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import EventType
from audit.services import audit_governance_event
from routing.models import Model

from .concurrency import MAX_CONCURRENT_CEILING
from .models import KEY_PREFIX, ApiKey, ApiKeyModel, Classification, Enforcement, Team, hash_secret
from .periods import zone_named
from .tools import parse_tool_patterns


@dataclass(frozen=True, slots=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str  # shown exactly once, never stored


def team_create(*, name: str, owner_email: str, display_name: str = "", actor: AbstractBaseUser | None = None) -> Team:
    team = Team(name=name, owner_email=owner_email, display_name=display_name)
    team.full_clean()
    team.save()
    audit_governance_event(event_type=EventType.TEAM_CREATED, actor=actor, team=team, detail={"team": team.name})
    return team


@transaction.atomic
def team_delete(*, team: Team, actor: AbstractBaseUser | None = None) -> None:
    """Delete a team that never had a key; one with keys is kept (its keys and audit rows name it)."""
    if team.api_keys.exists():
        raise ValidationError("a team that has had keys cannot be deleted: revoke its keys instead")
    snapshot = {name: str(getattr(team, name)) for name in ("name", *TEAM_SETTINGS)}
    # Recorded before the row goes, in the same transaction: the team's id still resolves.
    audit_governance_event(event_type=EventType.TEAM_DELETED, actor=actor, team=team, detail={"team": snapshot})
    team.delete()


TEAM_SETTINGS = (
    "display_name", "owner_email", "rpm", "tpm", "budget", "budget_period", "time_zone",
    "business_hours_start", "business_hours_end", "business_days",
)  # fmt: skip


@transaction.atomic
def team_update(*, team: Team, changes: dict[str, Any], actor: AbstractBaseUser | None = None) -> Team:
    """Change a team's settings (limits, budget, calendar); its name is its identity and stays."""
    unknown = set(changes) - set(TEAM_SETTINGS)
    if unknown:
        raise ValidationError({"__all__": f"not a team setting: {', '.join(sorted(unknown))}"})
    before = {name: getattr(team, name) for name in changes}
    for name, value in changes.items():
        setattr(team, name, value)
    zone_named(team.time_zone)  # raises for an unknown zone
    if not team.business_days or set(team.business_days) - set("1234567"):
        raise ValidationError({"business_days": "ISO weekday digits, 1 = Monday … 7 = Sunday"})
    team.full_clean()
    team.save()
    changed = {name: [str(before[name]), str(value)] for name, value in changes.items() if before[name] != value}
    if changed:
        audit_governance_event(event_type=EventType.TEAM_CHANGED, actor=actor, team=team, detail={"changed": changed})
    return team


@transaction.atomic
def api_key_issue(
    *,
    team: Team,
    name: str,
    system_prompt: str,
    models: Sequence[str],
    classification: str,
    purpose: str = "",
    rpm: int | None = None,
    tpm: int | None = None,
    max_tokens: int | None = None,
    max_messages: int | None = None,
    max_prompt_tokens: int | None = None,
    max_concurrent: int | None = None,
    budget: Decimal | None = None,
    enforcement: str = Enforcement.ENFORCE,
    expires_at: datetime | None = None,
    requested_by: str = "",
    approved_by: User | None = None,
    tools: Sequence[str] | str = (),
) -> IssuedKey:
    """Issue a key bound to one approved use case; the binding is sealed in the same transaction."""
    if classification not in Classification.values:
        raise ValidationError({"classification": f"must be one of {', '.join(Classification.values)}"})
    if not system_prompt.strip():
        raise ValidationError({"system_prompt": "a key must be bound to a system prompt"})
    names = list(dict.fromkeys(m.strip() for m in models if m.strip()))
    if not names:
        raise ValidationError({"models": "a key must allow at least one model"})
    found = {m.name: m for m in Model.objects.select_related("backend").filter(name__in=names)}
    missing = [n for n in names if n not in found]
    if missing:
        raise ValidationError({"models": f"unknown model(s): {', '.join(missing)}"})
    if classification == Classification.SENSITIVE:
        cloud = [n for n in names if not found[n].backend.is_on_prem]
        if cloud:
            raise ValidationError({"models": f"a sensitive key may only use on-premises models; cloud: {', '.join(cloud)}"})
    if enforcement not in Enforcement.values:
        raise ValidationError({"enforcement": f"must be one of {', '.join(Enforcement.values)}"})
    if max_concurrent is not None and not 1 <= max_concurrent <= MAX_CONCURRENT_CEILING:
        raise ValidationError({"max_concurrent": f"between 1 and {MAX_CONCURRENT_CEILING}, or empty for no limit"})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "the expiry is in the past"})
    if _active_key_named(team=team, name=name):
        raise ValidationError({"name": f"team {team.name} already has an active key named '{name}'"})
    try:
        tool_patterns = parse_tool_patterns(tools if isinstance(tools, str) else tuple(tools))
    except ValueError as exc:
        raise ValidationError({"tools": str(exc)}) from exc

    secret = secrets.token_urlsafe(32)  # 256 bits
    lookup_id = secrets.token_hex(6)
    api_key = ApiKey(
        lookup_id=lookup_id,
        secret_hash=hash_secret(secret),
        name=name,
        purpose=purpose,
        team=team,
        system_prompt=system_prompt,
        classification=classification,
        rpm=rpm,
        tpm=tpm,
        max_tokens=max_tokens,
        max_messages=max_messages,
        max_prompt_tokens=max_prompt_tokens,
        max_concurrent=max_concurrent,
        budget=budget,
        enforcement=enforcement,
        tools=",".join(tool_patterns),
        expires_at=expires_at,
        requested_by=requested_by,
        approved_by=approved_by,
    )
    api_key.full_clean(exclude=["lookup_id", "secret_hash"])
    api_key.save()
    ApiKeyModel.objects.bulk_create([ApiKeyModel(api_key=api_key, model=found[n]) for n in names])
    ApiKey.objects.filter(pk=api_key.pk).update(sealed=True)
    api_key.sealed = True
    audit_governance_event(
        event_type=EventType.KEY_ISSUED,
        actor=approved_by,
        team=team,
        api_key=api_key,
        detail={
            "models": names,
            "classification": classification,
            "requested_by": requested_by,
            "enforcement": enforcement,
            "tools": list(tool_patterns),
            "limits": {
                "rpm": rpm,
                "tpm": tpm,
                "max_tokens": max_tokens,
                "max_messages": max_messages,
                "max_prompt_tokens": max_prompt_tokens,
                "max_concurrent": max_concurrent,
                "budget": str(budget) if budget is not None else None,
            },
        },
    )
    return IssuedKey(api_key=api_key, plaintext=f"{KEY_PREFIX}_{lookup_id}_{secret}")


def _active_key_named(*, team: Team, name: str) -> bool:
    # Two live keys with one name would make the audit trail and the spend page ambiguous.
    now = timezone.now()
    live = ApiKey.objects.filter(team=team, name__iexact=name.strip(), revoked_at__isnull=True)
    return live.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)).exists()


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, revoked_by: User | None = None, reason: str = "") -> ApiKey:
    """Revoke now; every worker refuses the key from its next request (a scope a worker kept is
    checked against the scope stamp this write moves: teams/scope_cache.py)."""
    if api_key.revoked_at is not None:
        return api_key
    api_key.revoked_at = timezone.now()
    api_key.revoked_by = revoked_by
    api_key.revoke_reason = reason
    api_key.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
    audit_governance_event(
        event_type=EventType.KEY_REVOKED, actor=revoked_by, team=api_key.team, api_key=api_key, detail={"reason": reason}
    )
    return api_key


@transaction.atomic
def api_key_set_expiry(*, api_key: ApiKey, expires_at: datetime | None, actor: AbstractBaseUser | None = None) -> ApiKey:
    api_key.expires_at = expires_at
    api_key.save(update_fields=["expires_at"])
    audit_governance_event(
        event_type=EventType.KEY_EXPIRY_CHANGED,
        actor=actor,
        team=api_key.team,
        api_key=api_key,
        detail={"expires_at": expires_at.isoformat() if expires_at else None},
    )
    return api_key
