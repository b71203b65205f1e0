"""Database-enforced immutability of an issued key's binding.

Once `sealed` is true, only revocation and expiry may change on `teams_apikey`, and the
key's model allowlist (`teams_apikeymodel`) can be neither extended nor reduced. The
service layer already refuses such edits; these triggers make the database refuse them too,
whoever connects.
"""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

PG_SQL = """
CREATE OR REPLACE FUNCTION synapse_apikey_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.sealed THEN
            RAISE EXCEPTION 'synapse: an issued API key cannot be deleted; revoke it instead'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.sealed AND (to_jsonb(NEW) - ARRAY['expires_at', 'revoked_at', 'revoked_by_id', 'revoke_reason'])
            IS DISTINCT FROM (to_jsonb(OLD) - ARRAY['expires_at', 'revoked_at', 'revoked_by_id', 'revoke_reason']) THEN
        RAISE EXCEPTION 'synapse: the binding of an issued API key is immutable (only revocation and expiry may change); issue a new key'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER synapse_apikey_guard BEFORE UPDATE OR DELETE ON teams_apikey
    FOR EACH ROW EXECUTE FUNCTION synapse_apikey_guard();

CREATE OR REPLACE FUNCTION synapse_apikeymodel_guard() RETURNS trigger AS $$
DECLARE
    key_id bigint;
BEGIN
    key_id := CASE WHEN TG_OP = 'INSERT' THEN NEW.api_key_id ELSE OLD.api_key_id END;
    IF EXISTS (SELECT 1 FROM teams_apikey WHERE id = key_id AND sealed) THEN
        RAISE EXCEPTION 'synapse: the model allowlist of an issued API key is immutable; issue a new key'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER synapse_apikeymodel_guard BEFORE INSERT OR UPDATE OR DELETE ON teams_apikeymodel
    FOR EACH ROW EXECUTE FUNCTION synapse_apikeymodel_guard();
"""

PG_REVERSE = """
DROP TRIGGER IF EXISTS synapse_apikeymodel_guard ON teams_apikeymodel;
DROP FUNCTION IF EXISTS synapse_apikeymodel_guard();
DROP TRIGGER IF EXISTS synapse_apikey_guard ON teams_apikey;
DROP FUNCTION IF EXISTS synapse_apikey_guard();
"""

BOUND = (
    "lookup_id", "secret_hash", "name", "purpose", "team_id", "system_prompt", "classification",
    "rpm", "tpm", "max_tokens", "requested_by", "approved_by_id", "created_at", "sealed",
)  # fmt: skip

SQLITE_SQL = [
    "CREATE TRIGGER synapse_apikey_guard_update BEFORE UPDATE ON teams_apikey "
    "WHEN OLD.sealed AND ("
    + " OR ".join(f"NEW.{column} IS NOT OLD.{column}" for column in BOUND)
    + ") BEGIN SELECT RAISE(ABORT, 'synapse: the binding of an issued API key is immutable "
    "(only revocation and expiry may change); issue a new key'); END;",
    "CREATE TRIGGER synapse_apikey_guard_delete BEFORE DELETE ON teams_apikey WHEN OLD.sealed "
    "BEGIN SELECT RAISE(ABORT, 'synapse: an issued API key cannot be deleted; revoke it instead'); END;",
] + [
    f"CREATE TRIGGER synapse_apikeymodel_guard_{op.lower()} BEFORE {op} ON teams_apikeymodel "
    f"WHEN (SELECT sealed FROM teams_apikey WHERE id = {row}.api_key_id) "
    "BEGIN SELECT RAISE(ABORT, 'synapse: the model allowlist of an issued API key is immutable; "
    "issue a new key'); END;"
    for op, row in (("INSERT", "NEW"), ("UPDATE", "OLD"), ("DELETE", "OLD"))
]

SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS synapse_apikey_guard_update;",
    "DROP TRIGGER IF EXISTS synapse_apikey_guard_delete;",
    "DROP TRIGGER IF EXISTS synapse_apikeymodel_guard_insert;",
    "DROP TRIGGER IF EXISTS synapse_apikeymodel_guard_update;",
    "DROP TRIGGER IF EXISTS synapse_apikeymodel_guard_delete;",
]


def forwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_SQL)
    elif vendor == "sqlite":
        for statement in SQLITE_SQL:
            schema_editor.execute(statement)


def backwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_REVERSE)
    elif vendor == "sqlite":
        for statement in SQLITE_REVERSE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("teams", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
