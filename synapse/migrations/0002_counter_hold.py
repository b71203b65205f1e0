"""`synapse_counter_hold` and `synapse_counter_adjust`: every counter one request holds on, and
every correction a batch of settlements makes, each in one statement (PostgreSQL).

A reservation touches several counters of its key (rpm, tpm, spend) and every request of the
key touches the same rows, so each row stays locked from its update to the commit of the
request's holds. Done statement by statement, that is a round trip per counter while the first
row is locked, and every other request of the key queues behind it (measured: most sessions of
a loaded gateway waited on the key's rpm row). One call keeps the rows' lock time to the
function's run and the commit that follows. teams/limits.py says what each counter means.

Each counter i: add `amounts[i]`, creating the row (lifetime `ttls[i]` seconds) or restarting
an expired one, or, when `ttls[i]` is NULL, only if it exists (a spend counter, which the caller
seeds from the audit log: the result then ends with NULL at that counter). A total over
`limits[i]` gives the amount back when `give_back[i]`, and with `stop` ends the call there.
Returns the totals before any give-back, one per counter reached.

`synapse_counter_adjust` adds `deltas[i]` to each live counter `keys[i]`, in the order given (the
caller's lock order), and returns the totals, NULL for a counter whose window has ended.
"""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

CREATE = """
CREATE OR REPLACE FUNCTION synapse_counter_hold(
    keys text[], amounts bigint[], ttls double precision[], limits bigint[], give_back boolean[],
    now double precision, stop boolean
) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    totals bigint[] := '{}';
    total bigint;
BEGIN
    FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
        IF ttls[i] IS NULL THEN
            UPDATE synapse_counter SET value = value + amounts[i]
             WHERE key = keys[i] AND (expires IS NULL OR expires > now)
            RETURNING value INTO total;
            IF NOT FOUND THEN
                RETURN totals || NULL::bigint;
            END IF;
        ELSE
            INSERT INTO synapse_counter AS c (key, value, expires) VALUES (keys[i], amounts[i], now + ttls[i])
            ON CONFLICT (key) DO UPDATE SET
                value = CASE WHEN c.expires IS NOT NULL AND c.expires <= now THEN excluded.value ELSE c.value + excluded.value END,
                expires = CASE WHEN c.expires IS NOT NULL AND c.expires <= now THEN excluded.expires ELSE c.expires END
            RETURNING value INTO total;
        END IF;
        totals := totals || total;
        IF limits[i] IS NOT NULL AND total > limits[i] THEN
            IF give_back[i] THEN
                UPDATE synapse_counter SET value = value - amounts[i] WHERE key = keys[i];
            END IF;
            IF stop THEN
                RETURN totals;
            END IF;
        END IF;
    END LOOP;
    RETURN totals;
END
$$;
"""
CREATE_ADJUST = """
CREATE OR REPLACE FUNCTION synapse_counter_adjust(keys text[], deltas bigint[], now double precision)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    totals bigint[] := '{}';
    total bigint;
BEGIN
    FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
        UPDATE synapse_counter SET value = value + deltas[i]
         WHERE key = keys[i] AND (expires IS NULL OR expires > now)
        RETURNING value INTO total;
        totals := totals || total;
    END LOOP;
    RETURN totals;
END
$$;
"""
DROP = (
    "DROP FUNCTION IF EXISTS synapse_counter_hold("
    "text[], bigint[], double precision[], bigint[], boolean[], double precision, boolean); "
    "DROP FUNCTION IF EXISTS synapse_counter_adjust(text[], bigint[], double precision)"
)


def forwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)
        schema_editor.execute(CREATE_ADJUST)


def backwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("synapse", "0001_counter")]
    operations = [migrations.RunPython(forwards, backwards)]
