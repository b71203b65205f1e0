"""A key's tool policy (`tools`) joins the sealed binding.

PostgreSQL: the guard trigger of 0002 covers every column but the mutable ones, so nothing to
do. SQLite: adding a NOT NULL column rebuilds `teams_apikey`, which drops its triggers, and the
guard's column list is explicit; so, as in 0003, all five are dropped first and recreated with
`tools` in the list.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

BOUND_0003 = (
    "lookup_id", "secret_hash", "name", "purpose", "team_id", "system_prompt", "classification",
    "rpm", "tpm", "max_tokens", "requested_by", "approved_by_id", "created_at", "sealed",
    "max_messages", "max_prompt_tokens", "budget", "enforcement",
)  # fmt: skip
BOUND = (*BOUND_0003, "tools")

GUARD = "'synapse: the binding of an issued API key is immutable (only revocation and expiry may change); issue a new key'"
ALLOWLIST = "'synapse: the model allowlist of an issued API key is immutable; issue a new key'"


def sqlite_create(bound: tuple[str, ...]) -> list[str]:
    return [
        "CREATE TRIGGER synapse_apikey_guard_update BEFORE UPDATE ON teams_apikey "
        "WHEN OLD.sealed AND (" + " OR ".join(f"NEW.{column} IS NOT OLD.{column}" for column in bound) + ") "
        f"BEGIN SELECT RAISE(ABORT, {GUARD}); END;",
        "CREATE TRIGGER synapse_apikey_guard_delete BEFORE DELETE ON teams_apikey WHEN OLD.sealed "
        "BEGIN SELECT RAISE(ABORT, 'synapse: an issued API key cannot be deleted; revoke it instead'); END;",
    ] + [
        f"CREATE TRIGGER synapse_apikeymodel_guard_{op.lower()} BEFORE {op} ON teams_apikeymodel "
        f"WHEN (SELECT sealed FROM teams_apikey WHERE id = {row}.api_key_id) "
        f"BEGIN SELECT RAISE(ABORT, {ALLOWLIST}); END;"
        for op, row in (("INSERT", "NEW"), ("UPDATE", "OLD"), ("DELETE", "OLD"))
    ]


SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS {name};"
    for name in (
        "synapse_apikey_guard_update",
        "synapse_apikey_guard_delete",
        "synapse_apikeymodel_guard_insert",
        "synapse_apikeymodel_guard_update",
        "synapse_apikeymodel_guard_delete",
    )
]


def _on_sqlite(statements: list[str]) -> Callable[[StateApps, BaseDatabaseSchemaEditor], None]:
    def run(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        if schema_editor.connection.vendor == "sqlite":
            for statement in statements:
                schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("teams", "0003_limits_and_budgets")]

    operations = [
        migrations.RunPython(_on_sqlite(SQLITE_DROP), _on_sqlite(sqlite_create(BOUND_0003))),
        migrations.AddField(
            model_name="apikey",
            name="tools",
            field=models.TextField(
                blank=True,
                default="",
                help_text="Tool names or globs (server__tool), comma-separated; empty = no MCP tools, own /v1 tools allowed.",
            ),
        ),
        migrations.RunPython(_on_sqlite(sqlite_create(BOUND)), _on_sqlite(SQLITE_DROP)),
    ]
