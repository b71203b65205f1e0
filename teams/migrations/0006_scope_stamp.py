"""The scope stamp: one number that moves whenever anything a key's scope or route is read
from changes, so a worker may keep a key's scope between requests and check, in the statement
that holds the request's limits, that it still holds (teams/scope_cache.py).

`synapse_scope_stamp` is a one-row table, not a sequence: the bump is part of the writing
transaction, so a reader never sees the new number with the old rows (a sequence's nextval
is visible before the writer commits: a worker could remember a revoked key's old scope under
the new stamp and keep it). Statement-level triggers bump it on every write, truncation
included, to the tables `teams.selectors.api_key_authenticate_for` reads: keys, their model
allowlists, teams, approvers, models, fallbacks, backends and their health.

`synapse_counter_hold_at(stamp, …)` is `synapse_counter_hold` (synapse/0002) run only while
the stamp is `stamp`; NULL, holding nothing, once it has moved. PostgreSQL only: SQLite has
the table (the key read selects the stamp on both) but no triggers, and never uses the cache.
"""

from __future__ import annotations

from django.conf import settings
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

TABLE = "synapse_scope_stamp"
WATCHED = (
    ("teams", "ApiKey"),
    ("teams", "ApiKeyModel"),
    ("teams", "Team"),
    ("routing", "Model"),
    ("routing", "ModelFallback"),
    ("routing", "Backend"),
    ("routing", "BackendHealth"),
)

CREATE_TABLE = f"CREATE TABLE {TABLE} (id smallint PRIMARY KEY CHECK (id = 1), generation bigint NOT NULL)"
SEED = f"INSERT INTO {TABLE} (id, generation) VALUES (1, 1)"

BUMP = f"""
CREATE OR REPLACE FUNCTION synapse_scope_stamp_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {TABLE} SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END $$
"""

HOLD_AT = f"""
CREATE OR REPLACE FUNCTION synapse_counter_hold_at(stamp bigint, counts jsonb, now double precision, stop boolean)
RETURNS bigint[] LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {TABLE} WHERE id = 1 AND generation = stamp) THEN
        RETURN NULL;
    END IF;
    RETURN synapse_counter_hold(counts, now, stop);
END $$
"""


def _tables(apps: StateApps) -> list[str]:
    user = apps.get_model(settings.AUTH_USER_MODEL)
    return [apps.get_model(app, name)._meta.db_table for app, name in WATCHED] + [user._meta.db_table]


def forwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(CREATE_TABLE)
    schema_editor.execute(SEED)
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(BUMP)
    schema_editor.execute(HOLD_AT)
    for table in _tables(apps):
        schema_editor.execute(
            f"CREATE TRIGGER synapse_scope_stamp AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION synapse_scope_stamp_bump()"
        )


def backwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for table in _tables(apps):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS synapse_scope_stamp ON {table}")
        schema_editor.execute("DROP FUNCTION IF EXISTS synapse_counter_hold_at(bigint, jsonb, double precision, boolean)")
        schema_editor.execute("DROP FUNCTION IF EXISTS synapse_scope_stamp_bump()")
    schema_editor.execute(f"DROP TABLE {TABLE}")


class Migration(migrations.Migration):
    dependencies = [
        ("teams", "0005_apikey_max_concurrent"),
        ("routing", "0004_responses_backend_kinds"),
        ("synapse", "0002_counter_hold"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
