"""The serving role cannot switch the rules off (issue 14, finding 2).

Before: with one role for everything, the role serving requests owned the tables and could
`ALTER TABLE audit_auditevent DISABLE TRIGGER …` then UPDATE/DELETE rows, `DROP TRIGGER` +
`TRUNCATE`, and the same on the key bindings (a key turned from sensitive to non_sensitive).
Each of those moves is tried as a role holding exactly what `migrate` grants the serving role:
under `make test` the very role the whole suite runs as (tests/roles.py), else a fresh one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record_request
from synapse.audit_record import request_record
from synapse.context import RequestContext
from synapse.db_roles import serving_role_grant
from teams.services import IssuedKey
from tests.roles import TWO_ROLES

pytestmark = pytest.mark.django_db


@contextmanager
def as_role(role: str) -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute(f'SET ROLE "{role}"')
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")


@pytest.fixture
def serving_role() -> str:
    if connection.vendor != "postgresql":
        pytest.skip("two roles are a PostgreSQL deployment; SQLite is a single-machine trial")
    if TWO_ROLES:
        return str(connection.settings_dict["USER"])  # granted by the test database's setup
    role = f"synapse_serving_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" NOLOGIN')  # rolled back with the test's transaction
    serving_role_grant(role=role)
    return role


def test_the_serving_role_writes_audit_rows_but_cannot_undo_the_rules(serving_role: str, sensitive_key: IssuedKey) -> None:
    ctx = RequestContext(
        request_id="req_role", endpoint="chat.completions", method="POST", path="/v1/chat/completions",
        client_ip="127.0.0.1", user_agent="t", received_at=timezone.now(),
    )  # fmt: skip
    with as_role(serving_role):
        audit_record_request(record=request_record(ctx))  # what it is for: append a chained row
        assert AuditEvent.objects.filter(request_id="req_role").exists()
    key = sensitive_key.api_key.pk
    attempts = {
        "ALTER TABLE audit_auditevent DISABLE TRIGGER ALL": psycopg.errors.InsufficientPrivilege,
        "ALTER TABLE audit_auditevent DISABLE TRIGGER synapse_audit_chain": psycopg.errors.InsufficientPrivilege,
        "DROP TRIGGER synapse_audit_chain ON audit_auditevent": psycopg.errors.InsufficientPrivilege,
        "TRUNCATE audit_auditevent": psycopg.errors.InsufficientPrivilege,
        "UPDATE audit_auditevent SET status = 200": psycopg.errors.InsufficientPrivilege,
        "DELETE FROM audit_auditevent": psycopg.errors.InsufficientPrivilege,
        "SET session_replication_role = replica": psycopg.errors.InsufficientPrivilege,  # would skip every trigger
        "ALTER TABLE teams_apikey DISABLE TRIGGER ALL": psycopg.errors.InsufficientPrivilege,
        "TRUNCATE teams_apikey CASCADE": psycopg.errors.InsufficientPrivilege,
        # It may update a key (revocation, last use), but the sealed binding's trigger holds.
        f"UPDATE teams_apikey SET classification = 'non_sensitive' WHERE id = {key}": psycopg.errors.IntegrityConstraintViolation,
    }
    refused = {}
    with as_role(serving_role):
        for statement in attempts:
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(statement)
            except DatabaseError as exc:
                refused[statement] = type(exc.__cause__)
    assert refused == attempts
    assert AuditEvent.objects.filter(request_id="req_role").exists()


def test_the_suite_itself_runs_as_a_role_that_owns_nothing() -> None:
    if not TWO_ROLES:
        pytest.skip("one role (no DATABASE_ADMIN_URL): `make test` runs with two")
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user")
        user, *powers = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tableowner = current_user")
        owned = cursor.fetchone()[0]
    assert (user, powers, owned) == (connection.settings_dict["USER"], [False, False, False], 0)
