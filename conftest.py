"""Shared fixtures: named actors and keys, fake providers, and the real server.

The gateway fixture runs the production stack (gunicorn + uvicorn workers, 2 processes)
against the test database; tests that use it must commit their data, so they are marked
`django_db(transaction=True)`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.db import connection, connections

from routing.services import routing_import
from teams.models import Classification, Team
from teams.services import IssuedKey, api_key_issue, team_create
from tests.fakes.openai import FakeOpenAI
from tests.roles import OWNER_ALIAS, TWO_ROLES, DefaultLogin, url_of

ROOT = Path(__file__).resolve().parent
BOUND_PROMPT = "You are the claims assistant. Never reveal policy numbers."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ── the test database: made by the owner role, served by the serving role (tests/roles.py) ──


@pytest.fixture(scope="session")
def _default_login() -> DefaultLogin:
    return DefaultLogin()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, _default_login: DefaultLogin
) -> Iterator[None]:
    """pytest-django's hook just before it creates the test database: the owner creates it."""
    _default_login.as_owner()
    yield
    _default_login.as_serving_role()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker, _default_login: DefaultLogin) -> Iterator[None]:
    """Created and migrated by the owner; the tests then run as the serving role, and the owner
    drops the database at the end."""
    with django_db_blocker.unblock():
        _default_login.grant()
    _default_login.as_serving_role()
    yield
    _default_login.as_owner()


# ── append-only tables ──


@pytest.fixture(autouse=True)
def _fresh_alert_state() -> Iterator[None]:
    """The alert service's per-process memos: a test must not inherit another test's (SQLite
    reuses the ids a rolled-back test had, so a remembered cooldown could match a new key)."""
    from alerts import services

    def clear() -> None:
        services._thresholds_seen.clear()
        services._spike_checks_seen.clear()
        services._cooldowns.clear()
        services._rules_cache = (0.0, {})

    clear()
    yield
    clear()


@pytest.fixture(autouse=True)
def _fresh_scope_cache() -> Iterator[None]:
    """Kept key scopes (teams/scope_cache.py): a rolled-back test takes its stamp moves with it,
    so a scope kept in one test could match the stamp of the next."""
    from teams.scope_cache import scope_cache_clear

    scope_cache_clear()
    yield
    scope_cache_clear()


@pytest.fixture(scope="session", autouse=True)
def _flush_past_append_only_triggers() -> Iterator[None]:
    """Transactional tests end with a flush (TRUNCATE / DELETE of every table), which the audit
    log's triggers refuse; only that flush runs with triggers suspended, and as the owner role."""
    from audit.testing import flush_suspending_triggers

    with flush_suspending_triggers(owner_alias=OWNER_ALIAS if TWO_ROLES else None):
        yield


# ── fake providers (session-wide servers, cleared per test) ──


@pytest.fixture(scope="session")
def _onprem_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def _cloud_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def onprem_upstream(_onprem_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """A fake vLLM server (on-prem)."""
    _onprem_server.reset()
    yield _onprem_server
    _onprem_server.reset()


@pytest.fixture
def cloud_upstream(_cloud_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """A fake OpenAI (cloud)."""
    _cloud_server.reset()
    yield _cloud_server
    _cloud_server.reset()


# ── governance data ──


@pytest.fixture
def approver(django_user_model):
    return django_user_model.objects.create_superuser(username="alice", email="alice@example.com", password="alice-pass-123")


@pytest.fixture
def auditor(django_user_model):
    """A staff user in the "auditor" group: may view the audit log in the console, nothing else."""
    from audit.services import auditor_group_ensure

    user = django_user_model.objects.create_user(username="audrey", password="audrey-pass-123", is_staff=True)
    user.groups.add(auditor_group_ensure())
    return user


@pytest.fixture
def team(db) -> Team:
    return team_create(name="claims", owner_email="owner@example.com", display_name="Claims")


@pytest.fixture
def routing(db, onprem_upstream: FakeOpenAI, cloud_upstream: FakeOpenAI) -> None:
    """Backends: the built-in mock, a fake on-prem vLLM, a fake cloud OpenAI."""
    routing_import(
        document={
            "backends": [
                {"name": "mock", "kind": "mock", "location": "on_prem"},
                {"name": "local-vllm", "kind": "vllm", "base_url": f"{onprem_upstream.base_url}/v1", "location": "on_prem"},
                {
                    "name": "openai",
                    "kind": "openai",
                    "base_url": f"{cloud_upstream.base_url}/v1",
                    "api_key_env": "FAKE_OPENAI_KEY",
                    "location": "cloud",
                },
            ],
            "models": [
                {"name": "mock-small", "backend": "mock"},
                {"name": "llama-3-8b", "backend": "local-vllm", "upstream_model": "meta-llama/Meta-Llama-3-8B-Instruct"},
                {
                    "name": "gpt-4o-mini",
                    "backend": "openai",
                    "upstream_model": "gpt-4o-mini-2024-07-18",
                    "input_price_per_mtok": "0.15",
                    "output_price_per_mtok": "0.60",
                },
            ],
        }
    )


@pytest.fixture
def sensitive_key(team: Team, routing: None, approver) -> IssuedKey:
    return api_key_issue(
        team=team,
        name="Claims summariser",
        system_prompt=BOUND_PROMPT,
        models=["llama-3-8b", "mock-small"],
        classification=Classification.SENSITIVE,
        approved_by=approver,
    )


@pytest.fixture
def cloud_key(team: Team, routing: None, approver) -> IssuedKey:
    return api_key_issue(
        team=team,
        name="Marketing copy",
        system_prompt="You write marketing copy.",
        models=["gpt-4o-mini", "llama-3-8b"],
        classification=Classification.NON_SENSITIVE,
        approved_by=approver,
    )


# ── the real server ──


class Gateway:
    def __init__(self, base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base_url = base_url
        self.process = process
        self.log = log

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"

    def openai(self, key: str, **kwargs):
        from openai import OpenAI

        return OpenAI(base_url=self.v1, api_key=key, max_retries=0, **kwargs)

    def anthropic(self, key: str, **kwargs):
        """The official Anthropic SDK, pointed at the gateway root as its docs say (it adds /v1)."""
        from anthropic import Anthropic

        return Anthropic(base_url=self.base_url, api_key=key, max_retries=0, **kwargs)


def start_gateway(
    *, database_url: str, workers: int = 2, extra_env: dict[str, str] | None = None, graceful_timeout: int = 2
) -> Gateway:
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"synapse-gateway-{port}.log"
    # The owner's URL stays with the test process: a server gets the serving role only, as a
    # production replica does (only the migrate Job holds DATABASE_ADMIN_URL).
    inherited = {name: value for name, value in os.environ.items() if name != "DATABASE_ADMIN_URL"}
    env = {**inherited, "DATABASE_URL": database_url, "SYNAPSE_LOG_LEVEL": "WARNING", **(extra_env or {})}
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "synapse.asgi:application",
            # The production config (logging, metrics directory, control socket); the flags
            # below override its worker count, address and grace period.
            "-c",
            "synapse/gunicorn_conf.py",
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "--graceful-timeout",
            str(graceful_timeout),
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    # The master loads the app and the tokenizer tables before it forks (a few seconds; more on
    # a loaded machine).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited early:\n{log.read_text()[-3000:]}")
        try:
            # The liveness probe: up means the app is loaded, and unlike a /v1 probe it leaves
            # no audit row in the test that happens to start the server.
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return Gateway(base_url, process, log)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"gateway did not start:\n{log.read_text()[-3000:]}")


def stop_gateway(gateway: Gateway) -> None:
    gateway.process.terminate()
    try:
        gateway.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        gateway.process.kill()


def database_url_for_tests() -> str:
    """The test database as the serving role: what the servers the tests start are given."""
    return url_of(connection.settings_dict)


def owner_database_url_for_tests() -> str:
    """The test database as its owner role (under one role, the same as database_url_for_tests):
    for what only an owner or an administrator may do, such as creating databases or roles."""
    return url_of(connections[OWNER_ALIAS].settings_dict)


@pytest.fixture(scope="session")
def gateway(django_db_setup, django_db_blocker) -> Iterator[Gateway]:
    with django_db_blocker.unblock():
        url = database_url_for_tests()
    server = start_gateway(database_url=url)
    yield server
    stop_gateway(server)
