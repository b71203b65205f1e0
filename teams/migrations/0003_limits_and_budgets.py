"""Limits, budgets, enforcement mode and team calendars; the new key columns join the sealed binding.

On PostgreSQL the guard trigger of 0002 already covers every column but the mutable ones. On
SQLite its column list is explicit, and adding a NOT NULL column rebuilds `teams_apikey`,
which drops the table's triggers: so they are recreated here with the extended list.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

BOUND_0002 = (
    "lookup_id", "secret_hash", "name", "purpose", "team_id", "system_prompt", "classification",
    "rpm", "tpm", "max_tokens", "requested_by", "approved_by_id", "created_at", "sealed",
)  # fmt: skip
BOUND = (*BOUND_0002, "max_messages", "max_prompt_tokens", "budget", "enforcement")

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


# SQLite rebuilds teams_apikey to add a NOT NULL column; triggers naming that table (the
# allowlist guards do) would make the rebuild fail, so all five are dropped first.
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
    dependencies = [
        ("teams", "0002_seal_bindings"),
    ]

    operations = [
        migrations.RunPython(_on_sqlite(SQLITE_DROP), _on_sqlite(sqlite_create(BOUND_0002))),
        migrations.AddField(
            model_name="apikey",
            name="budget",
            field=models.DecimalField(
                blank=True, decimal_places=2, help_text="Spend ceiling per team budget period (USD).", max_digits=12, null=True
            ),
        ),
        migrations.AddField(
            model_name="apikey",
            name="enforcement",
            field=models.CharField(
                choices=[
                    ("enforce", "Enforce (refuse what breaches a policy)"),
                    ("monitor", "Monitor (record and alert, let the request through)"),
                ],
                default="enforce",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="apikey",
            name="max_messages",
            field=models.PositiveIntegerField(blank=True, help_text="Most messages one request may carry.", null=True),
        ),
        migrations.AddField(
            model_name="apikey",
            name="max_prompt_tokens",
            field=models.PositiveIntegerField(blank=True, help_text="Largest prompt one request may send.", null=True),
        ),
        migrations.AddField(
            model_name="team",
            name="budget",
            field=models.DecimalField(
                blank=True,
                decimal_places=2,
                help_text="Spend ceiling per budget period (USD); empty = none.",
                max_digits=12,
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="team",
            name="budget_period",
            field=models.CharField(
                choices=[("day", "Day"), ("week", "Week (from Monday)"), ("month", "Calendar month")],
                default="month",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="team",
            name="business_days",
            field=models.CharField(default="12345", help_text="ISO weekdays, 1 = Monday … 7 = Sunday.", max_length=7),
        ),
        migrations.AddField(
            model_name="team",
            name="business_hours_end",
            field=models.TimeField(default=datetime.time(18, 0)),
        ),
        migrations.AddField(
            model_name="team",
            name="business_hours_start",
            field=models.TimeField(default=datetime.time(8, 0)),
        ),
        migrations.AddField(
            model_name="team",
            name="rpm",
            field=models.PositiveIntegerField(
                blank=True, help_text="Requests per minute over all keys; empty = none.", null=True
            ),
        ),
        migrations.AddField(
            model_name="team",
            name="time_zone",
            field=models.CharField(
                blank=True,
                help_text="IANA name, e.g. Europe/Berlin: budget periods and business hours. Empty: server time zone.",
                max_length=64,
            ),
        ),
        migrations.AddField(
            model_name="team",
            name="tpm",
            field=models.PositiveIntegerField(blank=True, help_text="Tokens per minute over all keys; empty = none.", null=True),
        ),
        migrations.AlterField(
            model_name="apikey",
            name="max_tokens",
            field=models.PositiveIntegerField(
                blank=True, help_text="Ceiling on a request's max_tokens (larger values are clamped to it).", null=True
            ),
        ),
        migrations.RunPython(_on_sqlite(sqlite_create(BOUND)), _on_sqlite(SQLITE_DROP)),
    ]
