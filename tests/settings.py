"""Test settings: environment defaults, then the real settings unchanged.

Tests run against real PostgreSQL unless DATABASE_URL says otherwise (the SQLite pass of
`make test` sets it to a SQLite URL). The defaults go into os.environ so the gateway
processes the tests start inherit them.
"""

from __future__ import annotations

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/synapse_test")
os.environ.setdefault("SYNAPSE_SECRET_KEY", "test-secret-key-not-for-production-0123456789")
os.environ.setdefault("AUDIT_HASH_KEY", "test1:test-audit-hash-key")
os.environ.setdefault("SYNAPSE_LOG_LEVEL", "WARNING")
# The credential the fake cloud backend expects (read by the gateway from its environment).
os.environ.setdefault("FAKE_OPENAI_KEY", "sk-fake-cloud-credential")
# Rule edits made by a test reach the gateway's workers at once; outbox deliveries go quickly.
os.environ.setdefault("SYNAPSE_ALERT_RULES_TTL", "0")
os.environ.setdefault("SYNAPSE_DLP_RELOAD_SECONDS", "0")  # a test's pattern change reaches the workers at once
os.environ.setdefault("SYNAPSE_WEBHOOK_POLL_SECONDS", "0.3")
os.environ.setdefault("FAKE_ANTHROPIC_KEY", "sk-ant-fake-credential-0001")  # tests/fakes/anthropic.py's default
# The bearer tokens the fake MCP servers (tests/fakes/mcp.py) require from the gateway.
os.environ.setdefault("FAKE_MCP_CRM_TOKEN", "mcp-crm-credential-0001")
os.environ.setdefault("FAKE_MCP_DOCS_TOKEN", "mcp-docs-credential-0001")
os.environ.setdefault("FAKE_GEMINI_KEY", "AIza-fake-gemini-credential-0001")  # tests/fakes/gemini.py's default

from synapse.settings import *  # noqa: F403

# Fixtures create users in almost every test; the production hasher would dominate the run.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# One test database per pytest process, so concurrent runs (several developers or checkouts
# on one PostgreSQL) never drop each other's database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_synapse_{os.getpid()}"  # noqa: F405
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not Django's default in-memory test database: the gateway processes the tests
    # start must open the same database.
    _name = str(DATABASES["default"]["NAME"])  # noqa: F405
    DATABASES["default"].setdefault("TEST", {})["NAME"] = f"{_name.removesuffix('.sqlite3')}_test_{os.getpid()}.sqlite3"  # noqa: F405
