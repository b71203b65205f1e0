"""The hash chain and the append-only rule, enforced by the database.

Existing rows are chained first (in id order), then the triggers go in:
- UPDATE and DELETE (row level) and TRUNCATE (statement level) are refused, on PostgreSQL and
  SQLite (SQLite has no TRUNCATE: `DELETE FROM` without WHERE is refused row by row).
- PostgreSQL: a BEFORE INSERT trigger takes a transaction-scoped advisory lock, reads the head
  and links the new row (seq, prev_hash, row_hash = SHA-256(prev_hash:seq:digest)). The lock is
  held until commit, so concurrent writers from any number of processes chain in commit order.
- SQLite: the writer links the row inside its write transaction (SQLite has one writer at a
  time); a BEFORE INSERT trigger refuses a row that does not extend the head.

On SQLite, a later migration that alters this table rebuilds it, which drops these triggers:
such a migration must install them again (SQLITE_SQL).
"""

from __future__ import annotations

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

from audit.chain import CHAINED_FIELDS, GENESIS, chain_hash, content_digest

CHAIN_LOCK = 0x53594E4155444954  # "SYNAUDIT": the advisory lock every chained insert takes

APPEND_ONLY = (
    "synapse: audit_auditevent is append-only; {op} is refused "
    "(audit records are protected from modification and deletion, NIST AU-9)"
)

PG_SQL = f"""
CREATE OR REPLACE FUNCTION synapse_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'integrity_constraint_violation',
        MESSAGE = '{APPEND_ONLY.split("{op}")[0]}' || TG_OP || '{APPEND_ONLY.split("{op}")[1]}';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER synapse_audit_no_update_delete BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION synapse_audit_append_only();
CREATE TRIGGER synapse_audit_no_truncate BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION synapse_audit_append_only();

CREATE OR REPLACE FUNCTION synapse_audit_chain() RETURNS trigger AS $$
DECLARE
    head_seq bigint;
    head_hash text;
BEGIN
    IF NEW.row_hash IS NULL OR NEW.row_hash !~ '^[0-9a-f]{{64}}$' THEN
        RAISE EXCEPTION 'synapse: an audit row is inserted with its content digest in row_hash (see audit/chain.py)'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    -- Held until this transaction ends: the next writer waits here, then reads this row as the
    -- head (each statement of a volatile function takes a fresh snapshot), so no two rows
    -- share a parent. Under REPEATABLE READ a stale head would repeat a seq: the unique index
    -- refuses it rather than fork.
    PERFORM pg_advisory_xact_lock({CHAIN_LOCK});
    SELECT seq, row_hash INTO head_seq, head_hash FROM audit_auditevent ORDER BY seq DESC LIMIT 1;
    NEW.seq := COALESCE(head_seq, 0) + 1;
    NEW.prev_hash := COALESCE(head_hash, '{GENESIS}');
    NEW.row_hash := encode(sha256(convert_to(NEW.prev_hash || ':' || NEW.seq || ':' || NEW.row_hash, 'UTF8')), 'hex');
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER synapse_audit_chain BEFORE INSERT ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION synapse_audit_chain();
"""

PG_REVERSE = """
DROP TRIGGER IF EXISTS synapse_audit_chain ON audit_auditevent;
DROP FUNCTION IF EXISTS synapse_audit_chain();
DROP TRIGGER IF EXISTS synapse_audit_no_truncate ON audit_auditevent;
DROP TRIGGER IF EXISTS synapse_audit_no_update_delete ON audit_auditevent;
DROP FUNCTION IF EXISTS synapse_audit_append_only();
"""

SQLITE_SQL = [
    "CREATE TRIGGER synapse_audit_no_update BEFORE UPDATE ON audit_auditevent "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY.format(op='UPDATE')}'); END;",
    "CREATE TRIGGER synapse_audit_no_delete BEFORE DELETE ON audit_auditevent "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY.format(op='DELETE (or TRUNCATE)')}'); END;",
    "CREATE TRIGGER synapse_audit_chain BEFORE INSERT ON audit_auditevent "
    "WHEN NEW.seq IS NOT COALESCE((SELECT MAX(seq) FROM audit_auditevent), 0) + 1 "
    "OR NEW.prev_hash IS NOT COALESCE((SELECT row_hash FROM audit_auditevent ORDER BY seq DESC LIMIT 1), "
    f"'{GENESIS}') "
    "BEGIN SELECT RAISE(ABORT, 'synapse: an audit row must extend the chain head "
    "(seq = head seq + 1, prev_hash = head row_hash)'); END;",
]

SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS synapse_audit_chain;",
    "DROP TRIGGER IF EXISTS synapse_audit_no_delete;",
    "DROP TRIGGER IF EXISTS synapse_audit_no_update;",
]


def chain_existing_rows(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    AuditEvent = apps.get_model("audit", "AuditEvent")
    manager = AuditEvent.objects.using(schema_editor.connection.alias)
    prev_hash = GENESIS
    for seq, (pk, *values) in enumerate(manager.order_by("id").values_list("id", *CHAINED_FIELDS).iterator(), start=1):
        digest = content_digest(dict(zip(CHAINED_FIELDS, values, strict=True)))
        row_hash = chain_hash(prev_hash=prev_hash, seq=seq, digest=digest)
        manager.filter(pk=pk).update(seq=seq, prev_hash=prev_hash, row_hash=row_hash)
        prev_hash = row_hash


def install_triggers(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_SQL)
    elif vendor == "sqlite":
        for statement in SQLITE_SQL:
            schema_editor.execute(statement)


def remove_triggers(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_REVERSE)
    elif vendor == "sqlite":
        for statement in SQLITE_REVERSE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(db_default=GENESIS, editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="row_hash",
            field=models.CharField(db_default="", editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="seq",
            field=models.BigIntegerField(
                db_default=0, editable=False, help_text="Position in the chain: 1, 2, 3 … in commit order."
            ),
        ),
        migrations.RunPython(chain_existing_rows, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditevent",
            name="seq",
            field=models.BigIntegerField(
                db_default=0, editable=False, help_text="Position in the chain: 1, 2, 3 … in commit order.", unique=True
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="dlp",
            field=models.JSONField(
                blank=True, default=list, help_text="DLP findings: direction, category, pattern, action, count."
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="event_type",
            field=models.CharField(
                choices=[
                    ("request", "API request"),
                    ("team_created", "Team created"),
                    ("key_issued", "Key issued"),
                    ("key_revoked", "Key revoked"),
                    ("key_expiry_changed", "Key expiry changed"),
                    ("routing_imported", "Routing imported"),
                    ("routing_changed", "Routing changed"),
                    ("policy_changed", "DLP policy changed"),
                    ("limits_changed", "Limits or budget changed"),
                    ("admin_login", "Admin login"),
                    ("admin_logout", "Admin logout"),
                    ("admin_login_failed", "Admin login failed"),
                ],
                db_index=True,
                max_length=32,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="key_name",
            field=models.CharField(blank=True, help_text="The key's approved use case.", max_length=200, verbose_name="use case"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(condition=~models.Q(prompt_hmac=""), fields=["prompt_hmac"], name="audit_prompt_hmac"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(condition=~models.Q(response_hmac=""), fields=["response_hmac"], name="audit_response_hmac"),
        ),
        migrations.RunPython(install_triggers, remove_triggers),
    ]
