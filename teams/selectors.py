"""Reads for teams and keys, including the per-request key check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, fields
from datetime import datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db.models import BigIntegerField, Model
from django.utils import timezone

from routing.rows import Expr, Select
from routing.selectors import ROUTE_COLUMNS, ROUTE_JOINS, ROUTE_TABLES, Route, route_from_row

from .models import KEY_PREFIX, ApiKey, ApiKeyModel, Team, hash_secret
from .periods import is_business_time, zone_named
from .tools import stored_patterns

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class KeyScope:
    """What an authenticated key is bound to: an immutable snapshot for one request."""

    key_id: int
    lookup_id: str
    name: str
    team_id: int
    team_name: str
    classification: str
    system_prompt: str
    rpm: int | None
    tpm: int | None
    max_tokens: int | None
    approved_by: str
    # Limits (bound to the key) and the team's ceilings, budget and calendar (team settings).
    enforcement: str = "enforce"
    max_messages: int | None = None
    max_prompt_tokens: int | None = None
    max_concurrent: int | None = None
    budget: Decimal | None = None
    team_rpm: int | None = None
    team_tpm: int | None = None
    team_budget: Decimal | None = None
    budget_period: str = "month"
    time_zone: str = ""
    business_hours: tuple[time, time, str] = (time(8), time(18), "12345")
    # The bound tool patterns (teams/tools.py); None = no tool policy.
    tools: tuple[str, ...] | None = None

    @property
    def is_sensitive(self) -> bool:
        return self.classification == "sensitive"

    @property
    def is_monitor(self) -> bool:
        """Monitor mode: every refusal is recorded and alerted but the request goes through."""
        return self.enforcement == "monitor"

    def zone(self) -> ZoneInfo:
        return zone_named(self.time_zone)

    def is_business_time(self, at: datetime) -> bool:
        start, end, days = self.business_hours
        return is_business_time(at, zone=self.zone(), start=start, end=end, days=days)


def parse_key(raw: str) -> tuple[str, str] | None:
    """Split `syn_<lookup>_<secret>`; the secret may itself contain underscores."""
    prefix, _, rest = raw.partition("_")
    lookup_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not lookup_id or not secret or len(raw) > 200:
        return None
    return lookup_id, secret


# One statement per request, raw (see routing.rows). A column whose name is a KeyScope field
# is passed straight to it; the others are what the key check below reads.
_SCOPE_TABLES: dict[str, type[Model]] = {"k": ApiKey, "t": Team, "u": get_user_model()}
_SCOPE_COLUMNS: dict[str, str | Expr] = {
    "key_id": "k.id",
    "lookup_id": "k.lookup_id",
    "secret_hash": "k.secret_hash",
    "sealed": "k.sealed",
    "expires_at": "k.expires_at",
    "revoked_at": "k.revoked_at",
    "name": "k.name",
    "team_id": "k.team",
    "team_name": "t.name",
    "classification": "k.classification",
    "system_prompt": "k.system_prompt",
    "rpm": "k.rpm",
    "tpm": "k.tpm",
    "max_tokens": "k.max_tokens",
    "approved_by": "u.username",
    "enforcement": "k.enforcement",
    "max_messages": "k.max_messages",
    "max_prompt_tokens": "k.max_prompt_tokens",
    "max_concurrent": "k.max_concurrent",
    "budget": "k.budget",
    "team_rpm": "t.rpm",
    "team_tpm": "t.tpm",
    "team_budget": "t.budget",
    "budget_period": "t.budget_period",
    "time_zone": "t.time_zone",
    "business_hours_start": "t.business_hours_start",
    "business_hours_end": "t.business_hours_end",
    "business_days": "t.business_days",
    "tools": "k.tools",
}
_SCOPE_FROM = """
      FROM teams_apikey k
      JOIN teams_team t ON t.id = k.team_id
      LEFT JOIN auth_user u ON u.id = k.approved_by_id
"""
_SCOPE = Select(tables=_SCOPE_TABLES, columns=_SCOPE_COLUMNS, rest=f"{_SCOPE_FROM} WHERE k.lookup_id = %s")
# The key and, in the same statement, the route of the model it asks for if that model is on
# its allowlist: the request's first hop makes one round trip for both. The route's columns
# are read as `route.<name>`; NULL when the model is unknown or not on the allowlist.
_ROUTE_PREFIX = "route."
# The scope stamp (teams/migrations/0006) is read in the same statement, so in the same
# snapshot as the rows: a scope kept between requests is kept under the stamp it was read at.
_STAMP = Expr("(SELECT generation FROM synapse_scope_stamp WHERE id = 1)", BigIntegerField())
_SCOPE_AND_ROUTE = Select(
    tables={**_SCOPE_TABLES, **ROUTE_TABLES},
    columns={
        **_SCOPE_COLUMNS,
        "scope_stamp": _STAMP,
        **{_ROUTE_PREFIX + name: spec for name, spec in ROUTE_COLUMNS.items()},
    },
    rest=f"""{_SCOPE_FROM}
      LEFT JOIN (teams_apikeymodel a
                 JOIN routing_model m ON m.id = a.model_id AND m.name = %s
                 {ROUTE_JOINS}) ON a.api_key_id = k.id
     WHERE k.lookup_id = %s
    """,
)
_SCOPE_FIELDS = frozenset(field.name for field in fields(KeyScope))


def _key_scope(row: dict[str, Any]) -> KeyScope:
    """The one place a KeyScope is built from the database."""
    passed = {name: value for name, value in row.items() if name in _SCOPE_FIELDS}
    passed["approved_by"] = row["approved_by"] or ""  # a key issued without an approver
    passed["business_hours"] = (row["business_hours_start"], row["business_hours_end"], row["business_days"])
    passed["tools"] = stored_patterns(row["tools"])
    return KeyScope(**passed)


def api_key_authenticate(raw: str) -> KeyScope | None:
    """The key's scope, or None for unknown, malformed, revoked, expired or unsealed keys alike.

    Uncached: one indexed query, so revocation takes effect on the very next request in every
    worker and replica. The request pipeline keeps scopes between requests only under the
    scope stamp, checked on every request (teams/scope_cache.py).
    """
    parsed = parse_key(raw)
    if parsed is None:
        return None
    lookup_id, secret = parsed
    row = _SCOPE.one([lookup_id])
    if not _valid(row, lookup_id=lookup_id, secret=secret) or row is None:
        return None
    return _key_scope(row)


def api_key_authenticate_for(raw: str, *, model: str) -> tuple[KeyScope | None, Route | None]:
    """`api_key_authenticate` and `route_for_key` of `model` in one statement: the key's scope
    (None as there) and, for a valid key, the route if `model` is on its allowlist (none asked
    for: the key alone)."""
    if not model:
        return api_key_authenticate(raw), None
    read = api_key_read_for(raw, model=model)
    return (read.scope, read.route) if read is not None else (None, None)


@dataclass(frozen=True, slots=True)
class ScopeRead:
    """A valid key's scope and route as one statement read them, with what a worker needs to
    keep them between requests (teams/scope_cache.py)."""

    scope: KeyScope
    route: Route | None
    stamp: int | None  # the scope stamp in the same snapshot (None: no stamp row)
    secret_hash: str
    expires_at: datetime | None


def api_key_read_for(raw: str, *, model: str) -> ScopeRead | None:
    """`api_key_authenticate_for` of a non-empty `model`, with the stamp; None for an invalid key."""
    parsed = parse_key(raw)
    if parsed is None:
        return None
    lookup_id, secret = parsed
    row = _SCOPE_AND_ROUTE.one([model, lookup_id])
    if not _valid(row, lookup_id=lookup_id, secret=secret) or row is None:
        return None
    route = route_from_row({name[len(_ROUTE_PREFIX) :]: value for name, value in row.items() if name.startswith(_ROUTE_PREFIX)})
    return ScopeRead(_key_scope(row), route, row["scope_stamp"], row["secret_hash"], row["expires_at"])


def _valid(row: dict[str, Any] | None, *, lookup_id: str, secret: str) -> bool:
    if row is None:
        # Hash anyway so an unknown lookup id costs the same as a wrong secret.
        hmac.compare_digest(hash_secret(secret), hash_secret(lookup_id))
        return False
    if not hmac.compare_digest(row["secret_hash"], hash_secret(secret)):
        return False
    if not row["sealed"] or row["revoked_at"] is not None:
        return False
    return row["expires_at"] is None or row["expires_at"] > timezone.now()


def allowed_model_names(*, key_id: int) -> list[str]:
    return list(ApiKeyModel.objects.filter(api_key_id=key_id).order_by("model__name").values_list("model__name", flat=True))
