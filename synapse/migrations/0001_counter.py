"""The counter table. On PostgreSQL it is UNLOGGED with room for HOT updates.

UNLOGGED skips the write-ahead log, which is most of the cost of a one-row upsert; the price
is that a database crash empties the table. That is acceptable because nothing in it is a
record: rate windows are a minute long, and spend counters are re-seeded from the audit log
whenever they are missing (teams.budgets).
"""

from __future__ import annotations

from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django.db import migrations, models

PG_SQL = "ALTER TABLE synapse_counter SET UNLOGGED; ALTER TABLE synapse_counter SET (fillfactor = 70);"
PG_REVERSE = "ALTER TABLE synapse_counter SET LOGGED; ALTER TABLE synapse_counter RESET (fillfactor);"


def forwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_SQL)


def backwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_REVERSE)


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.CreateModel(
            name="Counter",
            fields=[
                ("key", models.CharField(max_length=250, primary_key=True, serialize=False)),
                ("value", models.BigIntegerField()),
                ("expires", models.FloatField(db_index=True, help_text="Unix time; NULL = never.", null=True)),
            ],
            options={"db_table": "synapse_counter"},
        ),
        migrations.RunPython(forwards, backwards),
    ]
