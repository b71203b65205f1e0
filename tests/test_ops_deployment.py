"""The deployment path on a fresh PostgreSQL database: three migrations at once, the bootstrap
command, and readiness following the database out and back.

Each test here owns a throwaway database (created and dropped by the fixture), so it can break
it without touching the test database the other tests share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from conftest import ROOT, start_gateway, stop_gateway

pytestmark = pytest.mark.gateway

# The throwaway databases are made, and used, by the role that may create databases: the owner
# role when the suite runs with two (tests/roles.py).
SERVER = os.environ.get("DATABASE_ADMIN_URL") or os.environ.get("DATABASE_URL", "")


def _admin() -> psycopg.Connection:
    base = SERVER.rsplit("/", 1)[0]
    return psycopg.connect(f"{base}/postgres", autocommit=True)


@pytest.fixture
def fresh_database() -> Iterator[str]:
    if not SERVER.startswith("postgres"):
        pytest.skip("the advisory lock and these faults are PostgreSQL's")
    name = f"synapse_ops_{uuid.uuid4().hex[:10]}"
    with _admin() as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield f"{SERVER.rsplit('/', 1)[0]}/{name}"
    with _admin() as admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
        admin.execute(f"DROP DATABASE IF EXISTS {name}")


def manage(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    inherited = {name: value for name, value in os.environ.items() if name != "DATABASE_ADMIN_URL"}  # one role here
    env = {**inherited, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "synapse.settings"}
    return subprocess.run(
        [sys.executable, str(Path(ROOT) / "manage.py"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_three_concurrent_migrations_on_a_fresh_database_all_succeed(fresh_database: str) -> None:
    with ThreadPoolExecutor(3) as pool:
        runs = list(pool.map(lambda _: manage(fresh_database, "migrate_locked", "-v", "0"), range(3)))
    assert [run.returncode for run in runs] == [0, 0, 0], [run.stderr[-2000:] for run in runs]
    assert manage(fresh_database, "migrate", "--check").returncode == 0  # nothing left to apply


def test_bootstrap_makes_the_first_admin_and_key_once_and_the_key_works(fresh_database: str) -> None:
    assert manage(fresh_database, "migrate_locked", "-v", "0").returncode == 0
    os.environ["SYNAPSE_ADMIN_PASSWORD"] = "a-long-admin-password"
    try:
        first = manage(fresh_database, "bootstrap", "--json")
        second = manage(fresh_database, "bootstrap", "--json")
    finally:
        del os.environ["SYNAPSE_ADMIN_PASSWORD"]
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    made, again = json.loads(first.stdout), json.loads(second.stdout)
    assert made["admin_created"] and made["key"].startswith("syn_")
    assert again == {"admin": "admin", "admin_created": False, "team": "platform", "key": None}

    gateway = start_gateway(database_url=fresh_database)
    try:
        answer = httpx.post(
            f"{gateway.v1}/chat/completions",
            json={"model": "mock-small", "messages": [{"role": "user", "content": "hello"}]},
            headers={"authorization": f"Bearer {made['key']}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
    finally:
        stop_gateway(gateway)


def test_bootstrap_will_not_invent_an_admin_password(fresh_database: str) -> None:
    assert manage(fresh_database, "migrate_locked", "-v", "0").returncode == 0
    env_password = os.environ.pop("SYNAPSE_ADMIN_PASSWORD", None)
    try:
        run = manage(fresh_database, "bootstrap")
    finally:
        if env_password is not None:
            os.environ["SYNAPSE_ADMIN_PASSWORD"] = env_password
    assert run.returncode != 0 and "SYNAPSE_ADMIN_PASSWORD" in run.stderr


def _ready(base_url: str) -> tuple[int, dict[str, object]]:
    response = httpx.get(f"{base_url}/readyz", timeout=10)
    return response.status_code, response.json()


def _wait_for(base_url: str, status: int) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        code, body = _ready(base_url)
        if code == status or time.monotonic() > deadline:
            assert code == status, body
            return body
        time.sleep(0.3)


def test_readiness_follows_the_database_out_and_back(fresh_database: str) -> None:
    name = fresh_database.rsplit("/", 1)[1]
    assert manage(fresh_database, "migrate_locked", "-v", "0").returncode == 0
    gateway = start_gateway(database_url=fresh_database, extra_env={"SYNAPSE_DB_POOL_TIMEOUT": "1"})
    try:
        _wait_for(gateway.base_url, 200)
        with _admin() as admin:
            # The database stops accepting connections, and drops the ones it had.
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
        body = _wait_for(gateway.base_url, 503)
        failed = body["failed"]
        assert isinstance(failed, list) and "database" in failed
        assert httpx.get(f"{gateway.base_url}/healthz", timeout=5).status_code == 200
        with _admin() as admin:
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        assert _wait_for(gateway.base_url, 200)["failed"] == []
    finally:
        stop_gateway(gateway)
