"""`make test` pre-flight: make sure PostgreSQL at DATABASE_URL answers, starting it if it is
installed but down, or fail with a message that says what to do."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from urllib.parse import urlsplit

import psycopg

DEFAULT = "postgres://postgres@127.0.0.1:5432/synapse_test"


def reachable(url: str) -> str | None:
    parts = urlsplit(url)
    try:
        with psycopg.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password or None,
            dbname="postgres",
            connect_timeout=3,
        ):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


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


def main() -> int:
    url = os.environ.get("DATABASE_URL") or DEFAULT
    if not url.startswith(("postgres://", "postgresql://")):
        print(f"DATABASE_URL is not PostgreSQL ({url.split(':')[0]}); the test suite needs PostgreSQL.", file=sys.stderr)
        return 2
    error = reachable(url)
    if error is None:
        return 0
    print(f"PostgreSQL at {urlsplit(url).hostname}:{urlsplit(url).port or 5432} is not answering ({error}); trying to start it…")
    if start_local_cluster():
        for _ in range(30):
            time.sleep(0.5)
            if reachable(url) is None:
                print("PostgreSQL started.")
                return 0
    print(
        f"Cannot reach PostgreSQL at DATABASE_URL={url}.\n"
        "Install and start PostgreSQL (e.g. `apt-get install postgresql`, then "
        "`pg_ctlcluster <version> main start`), or point DATABASE_URL at a reachable server "
        "(a superuser that may create the test database).",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
