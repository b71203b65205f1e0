"""The scope stamp (teams/migrations/0006): one number that moves on every write to what a
key's scope and route are read from. A scope kept between requests (teams/scope_cache.py) is
used only while the stamp it was read with is still the stamp."""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections


class ScopeChangedError(Exception):
    """The scope stamp moved since the kept scope was read; nothing was held on its strength."""


def scope_stamp_verify(stamp: int) -> None:
    """Raise `ScopeChangedError` unless the stamp is still `stamp` (one statement, for a
    request whose holds did not check it: `synapse_counter_hold_at` does)."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1 FROM synapse_scope_stamp WHERE id = 1 AND generation = %s", [stamp])
        if cursor.fetchone() is None:
            raise ScopeChangedError
