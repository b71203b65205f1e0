"""Keys' scopes kept by each worker between requests, checked on every request in the same
round trip as the request's limits.

Reading a key costs its own round trip (and, for the holds that follow, a transaction: BEGIN,
the read, the holds with their COMMIT). Revocation must still take effect on the very next
request in every worker and replica, so a kept scope is never trusted on its own: it is kept
under the scope stamp it was read with (teams/migrations/0006, which moves on every write to
what a scope is read from), and the request's first statement, the holds, runs only while the
stamp is unchanged (`synapse_counter_hold_at`). A request with nothing to hold on the database
checks the stamp in a statement of its own. When it moved, nothing was held: the pipeline
forgets the scope, reads the key again and starts the hop over (`ScopeChangedError`).

PostgreSQL only (the stamp's triggers are there), for governed requests naming a model on
the key's allowlist, and not for keys with a `max_concurrent` slot (its lease is taken in
statements of its own before the token holds, so a stale scope would be found too late).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from routing.selectors import Route

from .models import hash_secret
from .scope_stamp import ScopeChangedError, scope_stamp_verify
from .selectors import KeyScope, ScopeRead, api_key_read_for, parse_key

# Bounded: a worker serving more keys than this starts over rather than grow.
MAX_ENTRIES = 4096

_entries: dict[tuple[str, str], ScopeRead] = {}  # (lookup id, model) -> the read

__all__ = [
    "KeptScope",
    "ScopeChangedError",
    "scope_cache_clear",
    "scope_cache_enabled",
    "scope_forget",
    "scope_kept",
    "scope_read",
    "scope_stamp_verify",
]


@dataclass(frozen=True, slots=True)
class KeptScope:
    scope: KeyScope
    route: Route
    stamp: int


def scope_cache_enabled() -> bool:
    return bool(settings.SYNAPSE.get("SCOPE_CACHE", True)) and connections.settings[DEFAULT_DB_ALIAS]["ENGINE"] == (
        "django.db.backends.postgresql"
    )


def scope_kept(raw: str, *, model: str) -> KeptScope | None:
    """The kept scope of this key and model if the secret matches and the key has not expired
    since; to be checked against the stamp before anything is done on its strength."""
    parsed = parse_key(raw)
    if parsed is None:
        return None
    lookup_id, secret = parsed
    read = _entries.get((lookup_id, model))
    if read is None or read.route is None or read.stamp is None:
        return None
    if not hmac.compare_digest(read.secret_hash, hash_secret(secret)):
        return None  # read again: the database decides what a wrong secret means
    if read.expires_at is not None and read.expires_at <= timezone.now():
        _entries.pop((lookup_id, model), None)
        return None
    return KeptScope(read.scope, read.route, read.stamp)


def scope_read(raw: str, *, model: str) -> tuple[KeyScope | None, Route | None]:
    """The key's scope and the model's route from the database (as `api_key_authenticate_for`),
    kept for the next request when it may be."""
    read = api_key_read_for(raw, model=model)
    if read is None:
        return None, None
    if read.route is not None and read.stamp is not None and not read.scope.max_concurrent:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[(read.scope.lookup_id, model)] = read
    return read.scope, read.route


def scope_forget(raw: str, *, model: str) -> None:
    parsed = parse_key(raw)
    if parsed is not None:
        _entries.pop((parsed[0], model), None)


def scope_cache_clear() -> None:
    _entries.clear()
