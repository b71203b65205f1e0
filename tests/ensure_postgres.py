"""`make test` pre-flight: make sure PostgreSQL answers, starting it if it is installed but down,
or fail with a message that says what to do; then, with two roles (DATABASE_ADMIN_URL set), make
sure DATABASE_URL's role exists and is no superuser, creating it (LOGIN, nothing more) if not."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

DEFAULT = "postgres://postgres@127.0.0.1:5432/synapse_test"


def server(url: str) -> psycopg.Connection:
    """The server's maintenance database, as the URL's role."""
    parts = urlsplit(url)
    return psycopg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or None,
        dbname="postgres",
        connect_timeout=3,
        autocommit=True,
    )


def reachable(url: str) -> str | None:
    try:
        with server(url):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def serving_role_ensure(*, admin_url: str, serving_url: str) -> str | None:
    """Create the serving role if it is missing (idempotent); an error message if it cannot serve
    as the unprivileged role the suite is meant to prove."""
    role, owner = urlsplit(serving_url).username or "postgres", urlsplit(admin_url).username or "postgres"
    if role == owner:
        return f"DATABASE_URL and DATABASE_ADMIN_URL name the same role ({role}); the tests need a serving role of its own."
    with server(admin_url) as conn:
        found = conn.execute("SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = %s", [role]).fetchone()
        if found is None:
            statement = sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS").format(
                sql.Identifier(role)
            )
            if password := urlsplit(serving_url).password:
                statement += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
            conn.execute(statement)
            print(f"Created the serving role {role} (LOGIN, no other attribute).")
        elif found[0]:
            return f"The serving role {role} is a superuser: the tests would prove nothing about the rules holding against it."
        elif not found[1]:
            return f"The serving role {role} exists but may not log in (ALTER ROLE {role} LOGIN, as an administrator)."
    return None


def start_local_cluster() -> bool:
    if not shutil.which("pg_ctlcluster"):
        return False
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    started = False
    for version in versions:
        result = subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], capture_output=True, text=True
        )
        started = started or result.returncode == 0
    return started


def start_and_wait(url: str, error: str) -> bool:
    print(f"PostgreSQL at {urlsplit(url).hostname}:{urlsplit(url).port or 5432} is not answering ({error}); trying to start it…")
    if start_local_cluster():
        for _ in range(30):
            time.sleep(0.5)
            if reachable(url) is None:
                print("PostgreSQL started.")
                return True
    return False


def main() -> int:
    serving_url = os.environ.get("DATABASE_URL") or DEFAULT
    admin_url = os.environ.get("DATABASE_ADMIN_URL") or ""
    url = admin_url or serving_url
    for name, value in (("DATABASE_URL", serving_url), ("DATABASE_ADMIN_URL", admin_url)):
        if value and not value.startswith(("postgres://", "postgresql://")):
            print(f"{name} is not PostgreSQL ({value.split(':')[0]}); the test suite needs PostgreSQL.", file=sys.stderr)
            return 2
    if (error := reachable(url)) is None or start_and_wait(url, error):
        if admin_url and (problem := serving_role_ensure(admin_url=admin_url, serving_url=serving_url)):
            print(problem, file=sys.stderr)
            return 1
        return 0
    print(
        f"Cannot reach PostgreSQL at {url}.\n"
        "Install and start PostgreSQL (e.g. `apt-get install postgresql`, then "
        "`pg_ctlcluster <version> main start`), or point DATABASE_ADMIN_URL (the owner: a role that "
        "may create the test database and roles) and DATABASE_URL (the serving role) at a reachable server.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
