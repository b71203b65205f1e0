"""Two database roles end to end (issue 14, finding 2): a fresh database migrated by its owner
role (DATABASE_ADMIN_URL) through `migrate_locked`, then served by a second role (DATABASE_URL)
that can answer and audit a request but cannot switch the audit triggers off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from conftest import owner_database_url_for_tests, start_gateway, stop_gateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def two_roles() -> Iterator[tuple[str, str]]:
    """(owner URL, serving URL) of a new database the owner role owns."""
    superuser = urlsplit(owner_database_url_for_tests())  # the serving role may not make roles
    if superuser.scheme != "postgres":
        pytest.skip("two roles are a PostgreSQL deployment; SQLite is a single-machine trial")
    tag = uuid.uuid4().hex[:8]
    owner, serving, name = f"synapse_owner_{tag}", f"synapse_serving_{tag}", f"synapse_roles_{tag}"
    admin = superuser._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{owner}" LOGIN')
        conn.execute(f'CREATE ROLE "{serving}" LOGIN')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    host = f"{superuser.hostname}:{superuser.port or 5432}"
    try:
        yield f"postgres://{owner}@{host}/{name}", f"postgres://{serving}@{host}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{serving}"')
            conn.execute(f'DROP ROLE IF EXISTS "{owner}"')


def manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "synapse.settings", **env},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_owner_migrates_and_the_serving_role_serves_but_cannot_disable_a_trigger(two_roles: tuple[str, str]) -> None:
    owner_url, serving_url = two_roles
    env = {"DATABASE_URL": serving_url, "DATABASE_ADMIN_URL": owner_url, "SYNAPSE_DEBUG": "1"}
    manage("migrate_locked", env=env)
    with psycopg.connect(serving_url) as conn:
        owners = {row[0] for row in conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        assert owners == {urlsplit(owner_url).username}  # the serving role owns nothing
    key = json.loads(manage("bootstrap", "--json", env={**env, "SYNAPSE_ADMIN_PASSWORD": "a long enough password"}))["key"]

    gateway = start_gateway(database_url=serving_url, workers=1)
    try:
        body = {"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}
        response = httpx.post(f"{gateway.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)
    finally:
        stop_gateway(gateway)
    assert response.status_code == 200, response.text

    with psycopg.connect(serving_url, autocommit=True) as conn:
        written = conn.execute("SELECT count(*) FROM audit_auditevent WHERE request_id = %s", [response.headers["x-request-id"]])
        assert written.fetchone() == (1,)
        for statement in (
            "ALTER TABLE audit_auditevent DISABLE TRIGGER ALL",
            "DROP TRIGGER synapse_audit_chain ON audit_auditevent",
            "TRUNCATE audit_auditevent",
            "DELETE FROM audit_auditevent",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
