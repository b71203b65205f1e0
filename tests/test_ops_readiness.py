"""Each readiness check fails on its own fault and names it; none writes a row."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.db import connection, connections, transaction
from django.test import override_settings

from audit.models import AuditEvent
from conftest import free_port
from synapse.health import readiness
from tests.roles import OWNER_ALIAS, owner_db

pytestmark = pytest.mark.django_db


@pytest.mark.sqlite
def test_a_healthy_database_is_ready() -> None:
    assert readiness() == {"database": "ok", "migrations": "ok", "audit": "ok", "counters": "ok"}
    assert AuditEvent.objects.count() == 0


@pytest.mark.sqlite
def test_an_unapplied_migration_is_named() -> None:
    with connection.cursor() as cursor:  # the app's latest migration (an earlier one under a later is "applied")
        cursor.execute("SELECT max(name) FROM django_migrations WHERE app = 'synapse'")
        latest = cursor.fetchone()[0]
        cursor.execute("DELETE FROM django_migrations WHERE app = 'synapse' AND name = %s", [latest])
    results = readiness()
    assert f"synapse.{latest}" in results["migrations"]
    assert results["database"] == "ok" and results["audit"] == "ok"


@pytest.fixture
def reader_role() -> Iterator[str]:
    """A role that may read what the other checks read, but not write the audit log, and that
    the tests' role may become. Made by the owner role: the serving role may not make roles."""
    role = f"synapse_ro_{uuid.uuid4().hex[:8]}"
    with connections[OWNER_ALIAS].cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role}")
        cursor.execute(f"GRANT SELECT ON django_migrations, synapse_counter, {AuditEvent._meta.db_table} TO {role}")
        cursor.execute(f'GRANT {role} TO "{connection.settings_dict["USER"]}"')
    yield role
    with connections[OWNER_ALIAS].cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {role}")
        cursor.execute(f"DROP ROLE {role}")


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@owner_db  # the role is committed, so the tests' session can become it
def test_an_audit_table_without_insert_rights_is_not_ready(reader_role: str) -> None:
    with transaction.atomic():  # SET LOCAL: the pooled session is itself again after it
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL ROLE {reader_role}")
        results = readiness()
    assert results["audit"] == f"no INSERT privilege on {AuditEvent._meta.db_table}"
    assert results["database"] == "ok" and results["migrations"] == "ok" and results["counters"] == "ok"


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_a_read_only_database_is_not_ready() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL transaction_read_only = on")
    assert readiness()["audit"] == "the database is read-only (a standby?)"


def test_an_unreachable_counter_store_is_named() -> None:
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "counters": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        },
    }
    with override_settings(CACHES=caches, REDIS_URL=redis_url):
        results = readiness()
    assert results["counters"] != "ok" and "Connection" in results["counters"]
    assert results["database"] == "ok"
