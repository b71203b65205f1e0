"""Two PostgreSQL roles: the owner migrates, the serving role cannot undo the rules.

The triggers that keep the audit log append-only and the key bindings immutable hold only
against a role that does not own the tables: an owner may `ALTER TABLE … DISABLE TRIGGER`,
`DROP TRIGGER` or `TRUNCATE`. So migrations run as an owner role (`DATABASE_ADMIN_URL`) and
every `migrate` through it grants the serving role (`DATABASE_URL`'s user) what requests need:
rows of the app's tables, but never TRUNCATE, TRIGGER or REFERENCES, and on the audit table
only INSERT and SELECT.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

ADMIN_ALIAS = "admin"
APPEND_ONLY_TABLES = ("audit_auditevent",)


def serving_role_grant(*, role: str, using: str = DEFAULT_DB_ALIAS) -> None:
    """Grant `role` the serving privileges on every table of the current schema (idempotent)."""
    connection = connections[using]
    quoted = connection.ops.quote_name(role)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        schema = connection.ops.quote_name(cursor.fetchone()[0])
        cursor.execute(f"GRANT USAGE ON SCHEMA {schema} TO {quoted}")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {quoted}")
        cursor.execute(f"REVOKE TRUNCATE, TRIGGER, REFERENCES ON ALL TABLES IN SCHEMA {schema} FROM {quoted}")
        cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {quoted}")
        for table in APPEND_ONLY_TABLES:
            cursor.execute(f"REVOKE UPDATE, DELETE ON {connection.ops.quote_name(table)} FROM {quoted}")


def migrate_as_owner() -> str:
    """Point the default alias at the owner role for this process (migrate_locked), and return
    the alias to migrate: data migrations write through the default alias, so `migrate
    --database admin` alone would run them as the serving role, before it has any grant."""
    if ADMIN_ALIAS not in settings.DATABASES:
        return DEFAULT_DB_ALIAS
    connections[DEFAULT_DB_ALIAS].close()
    del connections[DEFAULT_DB_ALIAS]
    # A new mapping: the handler's is settings.DATABASES itself, which must keep naming the
    # serving role (grant_after_migrate reads it).
    connections.settings = {**connections.settings, DEFAULT_DB_ALIAS: connections.settings[ADMIN_ALIAS]}
    return DEFAULT_DB_ALIAS


def grant_after_migrate(sender: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate: a migration run as the owner role re-grants the serving role, so tables
    added by any migration are covered. Once per run (sent once per app: this app's turn)."""
    if sender.name != "synapse" or connections[using].vendor != "postgresql":
        return
    serving = settings.DATABASES[DEFAULT_DB_ALIAS].get("USER") or ""
    owner = connections[using].settings_dict.get("USER") or ""  # who ran this migration
    if serving and owner != serving:
        serving_role_grant(role=serving, using=using)
