"""Readiness: can this process serve a governed request right now?

Each check answers "ok" or says what is wrong; all run (one failure does not hide another) and
none writes anything. The audit check reads privileges instead of inserting a probe row: an
insert, even rolled back, takes the audit chain's advisory lock and burns a sequence value on
every probe of every pod; what it would catch (no INSERT right, a read-only standby after a
failover, a missing table) the catalog answers directly.

Sync functions: call them from a thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable

from django.conf import settings
from django.core.cache import caches
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor

logger = logging.getLogger("synapse.health")

OK = "ok"


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return OK


def check_migrations() -> str:
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in pending[:5])
        return f"{len(pending)} unapplied migration(s): {names}"
    return OK


def check_audit_writable() -> str:
    from audit.models import AuditEvent

    table = AuditEvent._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [table])
            if not cursor.fetchone()[0]:
                return f"table {table} does not exist"
            cursor.execute(
                "SELECT has_table_privilege(current_user, %s, 'INSERT'), current_setting('transaction_read_only')", [table]
            )
            may_insert, read_only = cursor.fetchone()
            if read_only == "on":
                return "the database is read-only (a standby?)"
            if not may_insert:
                return f"no INSERT privilege on {table}"
            return OK
        cursor.execute(f"SELECT 1 FROM {connection.ops.quote_name(table)} LIMIT 1")
        cursor.execute("PRAGMA query_only")
        if cursor.fetchone()[0]:
            return "the database is read-only"
    name = str(connection.settings_dict["NAME"])
    if os.path.exists(name) and not os.access(name, os.W_OK):
        return f"{name} is not writable"
    return OK


def check_counters() -> str:
    # Through the cache API: Redis when REDIS_URL is set, the database's counter table otherwise.
    caches["counters"].get("synapse:readyz")
    return OK


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "migrations": check_migrations,
    "audit": check_audit_writable,
    "counters": check_counters,
}


def readiness() -> dict[str, str]:
    """Every check's result by name ("ok" or what failed)."""
    results: dict[str, str] = {}
    try:
        for name, check in CHECKS.items():
            try:
                # A savepoint inside a caller's transaction (tests); a failed check then leaves
                # the connection usable for the next one.
                on_database = name != "counters" or not settings.REDIS_URL
                with transaction.atomic() if on_database else contextlib.nullcontext():
                    results[name] = check()
            except Exception as exc:  # noqa: BLE001 (a probe reports, it does not raise)
                first_line = (str(exc).strip().splitlines() or [""])[0]
                results[name] = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
    finally:
        if not connection.in_atomic_block:
            connection.close()  # back to the pool: probes run on a thread of their own
    failed = {name: result for name, result in results.items() if result != OK}
    if failed:
        logger.warning("not ready: %s", failed)
    return results
