"""`migrate` that several processes may run at once (replicas, a Job retried, compose restarts).

Django's `migrate` takes no lock: two processes on a fresh database both try to create the same
tables and one crashes with DuplicateTable. Here each waits for one PostgreSQL advisory lock,
held on a connection of its own for the whole run; whoever gets it second finds nothing to do.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from synapse.db_roles import migrate_as_owner

# Arbitrary but fixed: every Synapse process agrees on it ("synapse migrate" as a 63-bit int).
MIGRATE_LOCK_ID = 0x73796E6D6967


def _lock_connection(settings_dict: dict[str, Any], timeout_seconds: float) -> psycopg.Connection[Any]:
    params = {
        "dbname": settings_dict["NAME"],
        "user": settings_dict.get("USER") or None,
        "password": settings_dict.get("PASSWORD") or None,
        "host": settings_dict.get("HOST") or None,
        "port": settings_dict.get("PORT") or None,
    }
    tls = ("sslmode", "sslrootcert", "sslcert", "sslkey")
    options = {k: v for k, v in (settings_dict.get("OPTIONS") or {}).items() if k in tls}
    conn = psycopg.connect(**{k: v for k, v in params.items() if v is not None}, **options, autocommit=True)
    conn.execute(f"SET lock_timeout = '{int(timeout_seconds * 1000)}ms'")
    return conn


class Command(BaseCommand):
    help = "Apply migrations under a PostgreSQL advisory lock; safe to run from several processes at once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            default=None,
            help="Database alias to migrate (default: the database, as the owner role of DATABASE_ADMIN_URL when set).",
        )
        parser.add_argument(
            "--lock-timeout", type=float, default=600.0, help="Seconds to wait for another process's migration to finish."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # With two roles the owner migrates, and its post_migrate grants the serving role.
        alias = options["database"] or migrate_as_owner()
        verbosity = options["verbosity"]
        connection = connections[alias]
        if connection.vendor != "postgresql":
            # SQLite: one writer at a time anyway, and the quick start runs one process.
            call_command("migrate", database=alias, interactive=False, verbosity=verbosity)
            return
        try:
            lock = _lock_connection(connection.settings_dict, options["lock_timeout"])
        except psycopg.Error as exc:
            raise CommandError(f"cannot reach the database to take the migration lock: {exc}") from exc
        with lock:
            try:
                lock.execute("SELECT pg_advisory_lock(%s)", [MIGRATE_LOCK_ID])
            except psycopg.errors.LockNotAvailable as exc:
                raise CommandError(f"another migration held the lock for over {options['lock_timeout']:g} s") from exc
            try:
                call_command("migrate", database=alias, interactive=False, verbosity=verbosity)
            finally:
                lock.execute("SELECT pg_advisory_unlock(%s)", [MIGRATE_LOCK_ID])
        self.stdout.write("migrations applied")
