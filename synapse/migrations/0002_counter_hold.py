"""`synapse_counter_hold` and `synapse_counter_adjust`: every counter one request holds on, and
every correction a batch of settlements makes, each in one statement (PostgreSQL).

A reservation touches several counters of its key (rpm, tpm, spend) and every request of the
key touches the same rows, so each row stays locked from its update to the commit of the
request's holds. Done statement by statement, that is a round trip per counter while the first
row is locked, and every other request of the key queues behind it (measured: most sessions of
a loaded gateway waited on the key's rpm row). One call keeps the rows' lock time to the
function's run and the commit that follows. teams/limits.py says what each counter means.

`counts` is a JSON array (one parameter: quoting a handful of arrays client-side cost more CPU
than the statement) of [key, amount, ttl, limit, give_back]. Each counter: add `amount`,
creating the row (lifetime `ttl` seconds) or restarting an expired one, or, when `ttl` is null,
only if it exists (a spend counter, which the caller seeds from the audit log: the result then
ends with NULL at that counter). A total over `limit` gives the amount back when `give_back`,
and with `stop` ends the call there. Returns the totals before any give-back, one per counter
reached.

`synapse_counter_adjust` takes [key, delta] pairs and adds each delta to its live counter, in
the order given (the caller's lock order); it returns the totals, NULL for a counter whose
window has ended.
"""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

CREATE = """
CREATE OR REPLACE FUNCTION synapse_counter_hold(counts jsonb, now double precision, stop boolean)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    totals bigint[] := '{}';
    total bigint;
    item jsonb;
    counter text;
    amount bigint;
    ttl double precision;
    ceiling bigint;
BEGIN
    FOR item IN SELECT value FROM jsonb_array_elements(counts) LOOP
        counter := item->>0;
        amount := (item->>1)::bigint;
        ttl := (item->>2)::double precision;
        ceiling := (item->>3)::bigint;
        IF ttl IS NULL THEN
            UPDATE synapse_counter SET value = value + amount
             WHERE key = counter AND (expires IS NULL OR expires > now)
            RETURNING value INTO total;
            IF NOT FOUND THEN
                RETURN totals || NULL::bigint;
            END IF;
        ELSE
            INSERT INTO synapse_counter AS c (key, value, expires) VALUES (counter, amount, now + ttl)
            ON CONFLICT (key) DO UPDATE SET
                value = CASE WHEN c.expires IS NOT NULL AND c.expires <= now THEN excluded.value ELSE c.value + excluded.value END,
                expires = CASE WHEN c.expires IS NOT NULL AND c.expires <= now THEN excluded.expires ELSE c.expires END
            RETURNING value INTO total;
        END IF;
        totals := totals || total;
        IF ceiling IS NOT NULL AND total > ceiling THEN
            IF (item->>4)::boolean THEN
                UPDATE synapse_counter SET value = value - amount WHERE key = counter;
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
CREATE OR REPLACE FUNCTION synapse_counter_adjust(deltas jsonb, now double precision)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    totals bigint[] := '{}';
    total bigint;
    item jsonb;
BEGIN
    FOR item IN SELECT value FROM jsonb_array_elements(deltas) LOOP
        UPDATE synapse_counter SET value = value + (item->>1)::bigint
         WHERE key = item->>0 AND (expires IS NULL OR expires > now)
        RETURNING value INTO total;
        totals := totals || total;
    END LOOP;
    RETURN totals;
END
$$;
"""
DROP = (
    "DROP FUNCTION IF EXISTS synapse_counter_hold(jsonb, double precision, boolean); "
    "DROP FUNCTION IF EXISTS synapse_counter_adjust(jsonb, double precision)"
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
