"""The counter store's cost per request: `limits_reserve` + `limits_settle`, on PostgreSQL and Redis.

Creates (and drops) its own PostgreSQL database, migrates it, issues one key with every
limit the gateway knows (rpm, tpm, budget, and the team's rpm, tpm and budget ceilings),
then times, per request, in this one process:

1. the same reserve + settle for a key without limits: the token counting alone, no counter;
2. reserve + settle with every limit, counters on PostgreSQL (synapse.cache.CounterCache,
   an UNLOGGED table, one statement per operation);
3. the same with counters on Redis (127.0.0.1:6379 db 15, a unique key prefix, deleted after).

The difference between 2 or 3 and 1 is what the counter store costs a request. Nothing here
asserts: these are measurements. Run: `.venv/bin/python bench/limits_bench.py`
(BENCH_ADMIN_DATABASE_URL and BENCH_REDIS_URL to point elsewhere; BENCH_LIMITS_REQUESTS).
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ADMIN_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB_NAME = f"synapse_bench_limits_{os.getpid()}"
DATABASE_URL = ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUESTS = int(os.environ.get("BENCH_LIMITS_REQUESTS", "3000"))
WARM_UP = 200

os.environ.update(
    {
        "DATABASE_URL": DATABASE_URL,
        "DJANGO_SETTINGS_MODULE": "synapse.settings",
        "SYNAPSE_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnop",
        "AUDIT_HASH_KEY": "bench:bench-audit-hash-key",
        "SYNAPSE_LOG_LEVEL": "ERROR",
        "REDIS_URL": "",  # the database store first; Redis is switched on below
    }
)

BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Summarise the attached claim in two sentences. " * 8}],
    "max_tokens": 200,
}
PRICES: dict[str, Any] = {"input_price_per_mtok": Decimal("0.15"), "output_price_per_mtok": Decimal("0.60")}


def _redis_up() -> bool:
    parsed = urlparse(REDIS_URL)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1):
            return True
    except OSError:
        return False


def _scopes() -> tuple[Any, Any]:
    """A key with every limit (in a team with every ceiling), and one without any."""
    from routing.services import routing_import
    from teams.selectors import api_key_authenticate
    from teams.services import api_key_issue, team_create, team_update

    routing_import(
        document={
            "backends": [{"name": "mock", "kind": "mock", "location": "on_prem"}],
            "models": [
                {"name": "gpt-4o-mini", "backend": "mock", "input_price_per_mtok": "0.15", "output_price_per_mtok": "0.60"}
            ],
        }
    )
    team = team_create(name="bench", owner_email="bench@example.com")
    # Ceilings far above what the run uses: every check runs, none refuses.
    team_update(team=team, changes={"rpm": 10**8, "tpm": 10**9, "budget": Decimal("1000000")})
    common: dict[str, Any] = {"team": team, "system_prompt": "Be brief.", "models": ["gpt-4o-mini"], "classification": "sensitive"}
    limited = api_key_issue(name="limited", rpm=10**8, tpm=10**9, budget=Decimal("1000000"), **common)
    team_free = team_create(name="bench-free", owner_email="bench@example.com")
    free = api_key_issue(name="unlimited", **{**common, "team": team_free})
    return api_key_authenticate(limited.plaintext), api_key_authenticate(free.plaintext)


def _one_request(scope: Any) -> Callable[[], None]:
    from teams.limits import limits_reserve, limits_settle

    def run() -> None:
        reservation = limits_reserve(
            scope=scope, endpoint="chat.completions", body=BODY, model="gpt-4o-mini", system_prompt="Be brief.", **PRICES
        )
        if reservation.breaches or reservation.unavailable:
            raise RuntimeError(f"the bench key was refused: {reservation.breaches or 'counter store unavailable'}")
        limits_settle(reservation, prompt_tokens=110, completion_tokens=42, cost=Decimal("0.0000417"), reached_upstream=True)

    return run


def _timed(run: Callable[[], None]) -> list[float]:
    for _ in range(WARM_UP):
        run()
    timings = []
    for _ in range(REQUESTS):
        start = time.perf_counter()
        run()
        timings.append((time.perf_counter() - start) * 1e6)
    return timings


def _describe(label: str, timings: list[float], baseline: list[float] | None = None) -> str:
    ordered = sorted(timings)
    p50, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99) - 1]
    mean = statistics.fmean(timings)
    extra = f"   store's share: {mean - statistics.fmean(baseline):7.0f} µs" if baseline else ""
    return f"{label:<44} mean {mean:7.0f} µs   p50 {p50:7.0f} µs   p99 {p99:7.0f} µs{extra}"


def _statements(run: Callable[[], None]) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        run()
    return len(captured.captured_queries)


def main() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
        row = conn.execute("SHOW server_version").fetchone()
        assert row is not None  # SHOW answers one row
        version = row[0]
    prefix = f"bench-limits-{uuid.uuid4().hex[:10]}"
    try:
        import django

        django.setup()
        from django.core.cache import caches
        from django.core.management import call_command
        from django.db import connection
        from django.test.utils import override_settings

        from teams.tokens import warm_up

        call_command("migrate", verbosity=0)
        warm_up()
        limited, unlimited = _scopes()
        print(f"PostgreSQL {version}; {os.cpu_count()} CPUs; {REQUESTS} requests per figure, sequential, one process")
        print("per request = limits_reserve + limits_settle (rpm, tpm, budget for the key and its team)")

        counting = _timed(_one_request(unlimited))
        print(_describe("no limits (token counting only)", counting))
        database = _timed(_one_request(limited))
        statements = _statements(_one_request(limited))
        print(_describe(f"PostgreSQL counters ({statements} statements)", database, counting))

        if not _redis_up():
            print(f"Redis: not running at {REDIS_URL}; skipped")
            return
        redis_cache = {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
            "TIMEOUT": None,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
        from django.conf import settings

        with override_settings(CACHES={**settings.CACHES, "counters": redis_cache}):
            try:
                redis = _timed(_one_request(limited))
                print(_describe("Redis counters (django-redis)", redis, counting))
            finally:
                # Only this run's keys: the prefix is unique.
                caches["counters"].delete_pattern("*")  # type: ignore[attr-defined]  # django-redis's own method
        connection.close()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


if __name__ == "__main__":
    main()
