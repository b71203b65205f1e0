"""Audit write cost: per request, and chained inserts per second with 8 concurrent writers.

Creates (and drops) its own PostgreSQL database, migrates it, then measures:
1. the cost of one `audit_record_request` (what the pipeline pays per request, in its one
   thread hop), split into the Python side (keyed hashes, normalisation, content digest) and
   the database side, against the same INSERT into a copy of the table without the chain
   trigger;
2. rows per second from 8 writer processes, chained vs the trigger-less copy (the chain
   serialises commits on one advisory lock: this is its price), and chained through each
   process's group committer with 16 concurrent requests per process, the rows of requests
   finishing together sharing one transaction and one flush: on the event loop, batches written
   by the loop's own database hops (what a gateway worker on PostgreSQL does), and from request
   threads through the writer thread (where hops run on database threads instead);
3. `verify_audit` speed over the rows just written.
Nothing here asserts: these are measurements. Run: `.venv/bin/python bench/audit_bench.py`
(PostgreSQL at 127.0.0.1:5432; BENCH_ADMIN_DATABASE_URL to point elsewhere).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ADMIN_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB_NAME = "synapse_bench_audit"
DATABASE_URL = ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}"
WRITERS = 8
IN_FLIGHT = int(os.environ.get("BENCH_AUDIT_IN_FLIGHT", "16"))  # concurrent requests per writer process
SEQUENTIAL = int(os.environ.get("BENCH_AUDIT_WRITES", "3000"))
SECONDS = float(os.environ.get("BENCH_AUDIT_SECONDS", "5"))

os.environ.update(
    {
        "DATABASE_URL": DATABASE_URL,
        "DJANGO_SETTINGS_MODULE": "synapse.settings",
        "SYNAPSE_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnop",
        "AUDIT_HASH_KEY": "bench:bench-audit-hash-key",
        "SYNAPSE_LOG_LEVEL": "ERROR",
    }
)


def _setup() -> None:
    import django

    django.setup()


def _context() -> Any:
    """A finished, allowed chat request as the pipeline hands it to the audit layer."""
    from dlp.engine import Action, Direction
    from synapse.context import Attempt, DlpFinding, RequestContext

    ctx = RequestContext(
        request_id=f"req_{uuid.uuid4().hex}",
        endpoint="chat.completions",
        method="POST",
        path="/v1/chat/completions",
        client_ip="10.20.30.40",
        user_agent="OpenAI/Python 1.99.0",
        received_at=datetime.now(UTC),
    )
    ctx.key = SimpleNamespace(  # type: ignore[assignment]  # a stand-in with only the fields audited
        team_id=1, team_name="claims", key_id=7, name="Claims summariser", approved_by="alice", classification="sensitive"
    )
    ctx.route = SimpleNamespace(backend=SimpleNamespace(name="local-vllm"))  # type: ignore[assignment]  # a stand-in route
    ctx.model_requested = "llama-3-8b"
    ctx.body = {"model": "llama-3-8b", "messages": [{"role": "user", "content": "Summarise claim 42 in two sentences. " * 20}]}
    ctx.response_text = ["The claim concerns water damage. ", "It was approved on 3 March."]
    ctx.dlp_findings = [DlpFinding(direction=Direction.PROMPT, category="pii", pattern="us_ssn", action=Action.REDACT)]
    ctx.attempts = [Attempt(backend="local-vllm", outcome="ok", latency_ms=412.734, status=200)]
    ctx.prompt_tokens, ctx.completion_tokens, ctx.cost, ctx.upstream_ms = 180, 24, Decimal("0.0000414"), 412.734
    return ctx


def _plain_model() -> Any:
    """The audit model's columns and indexes on a copy of the table that has no triggers."""
    from django.db import models

    from audit.models import AuditEvent

    attrs: dict[str, Any] = {"__module__": __name__}
    for field in AuditEvent._meta.concrete_fields:
        attrs[field.name] = field.clone()
    attrs["Meta"] = type("Meta", (), {"db_table": "bench_plain", "app_label": "audit", "managed": False})
    return type("PlainEvent", (models.Model,), attrs)


def _plain_insert(model: Any, ctx: Any, seq: int) -> None:
    """The same row and the same work, into the copy without the chain trigger."""
    from audit.chain import content_digest
    from audit.services import normalise_values, request_values
    from synapse.audit_record import request_record

    row = normalise_values(request_values(request_record(ctx)))
    model.objects.create(**row, seq=seq, prev_hash="0" * 64, row_hash=content_digest(row))


def _python_side(ctx: Any) -> None:
    """Everything `audit_record_request` does except the INSERT."""
    from audit.chain import content_digest
    from audit.services import normalise_values, request_values
    from synapse.audit_record import request_record

    content_digest(normalise_values(request_values(request_record(ctx))))


def _timed(fn: Any, n: int) -> list[float]:
    timings = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        timings.append((time.perf_counter() - start) * 1e6)
    return timings


def _describe(label: str, timings: list[float]) -> str:
    timings = sorted(timings)
    return (
        f"{label:<44} mean {statistics.fmean(timings):7.0f} µs   p50 {statistics.median(timings):7.0f} µs   "
        f"p99 {timings[int(len(timings) * 0.99)]:7.0f} µs"
    )


def _writer(chained: bool, barrier: Any, offset: int, counts: Any, index: int) -> None:
    _setup()
    from django.db import connection

    from audit.services import audit_record_request
    from synapse.audit_record import request_record

    plain = _plain_model()
    ctx = _context()
    connection.ensure_connection()
    barrier.wait()  # every writer is set up and connected: start together
    stop_at = time.perf_counter() + SECONDS
    done = 0
    while time.perf_counter() < stop_at:
        if chained:
            audit_record_request(record=request_record(ctx))
        else:
            _plain_insert(plain, ctx, offset + done)
        done += 1
    counts[index] = done


def _grouped_writer(barrier: Any, counts: Any, index: int) -> None:
    """IN_FLIGHT request threads in one process, each handing its row to the group committer
    and waiting for the commit, as the pipeline does."""
    import threading

    _setup()
    from audit.group_commit import group_committer
    from audit.services import request_values
    from synapse.audit_record import request_record

    ctx = _context()
    committer = group_committer()
    committer.submit(values=lambda: request_values(request_record(ctx))).result()  # connect, start the writer
    done = [0] * IN_FLIGHT
    barrier.wait()
    stop_at = time.perf_counter() + SECONDS

    def request(slot: int) -> None:
        while time.perf_counter() < stop_at:
            committer.submit(values=lambda: request_values(request_record(ctx))).result()
            done[slot] += 1

    threads = [threading.Thread(target=request, args=(slot,)) for slot in range(IN_FLIGHT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts[index] = sum(done)


def _loop_writer(barrier: Any, counts: Any, index: int) -> None:
    """IN_FLIGHT requests on one event loop, each awaiting its row's commit through the group
    committer, whose batches run as database hops on that loop, as in a gateway worker."""
    import asyncio

    _setup()
    from audit.group_commit import group_committer
    from audit.services import request_values
    from synapse.audit_record import request_record
    from synapse.db import on_loop, run_db

    if not on_loop():
        raise RuntimeError("database hops do not run on the event loop with these settings")
    ctx = _context()
    committer = group_committer()
    done = [0] * IN_FLIGHT

    async def request(slot: int, stop_at: float) -> None:
        while time.perf_counter() < stop_at:
            await committer.write(values=lambda: request_values(request_record(ctx)), run=run_db)
            done[slot] += 1

    async def main() -> None:
        await committer.write(values=lambda: request_values(request_record(ctx)), run=run_db)  # connect
        barrier.wait()
        stop_at = time.perf_counter() + SECONDS
        await asyncio.gather(*(request(slot, stop_at) for slot in range(IN_FLIGHT)))

    asyncio.run(main())
    counts[index] = sum(done)


def _commits() -> int:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (DB_NAME,)).fetchone()
    assert row is not None  # the benchmark's database exists while it runs
    return int(row[0])


def _throughput(chained: bool, grouped: str = "") -> float:
    spawn = multiprocessing.get_context("spawn")
    counts = spawn.Array("q", WRITERS)
    barrier = spawn.Barrier(WRITERS)
    if grouped:
        target = _loop_writer if grouped == "loop" else _grouped_writer
        processes = [spawn.Process(target=target, args=(barrier, counts, i)) for i in range(WRITERS)]
    else:
        processes = [
            spawn.Process(target=_writer, args=(chained, barrier, 10_000_000 * (i + 1), counts, i)) for i in range(WRITERS)
        ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    if any(process.exitcode for process in processes):
        raise RuntimeError("a writer process failed")
    return sum(counts[:]) / SECONDS


def _show(conn: psycopg.Connection[Any], name: str) -> object:
    row = conn.execute(f"SHOW {name}").fetchone()
    assert row is not None  # SHOW answers one row
    return row[0]


def main() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
        settings_line = ", ".join(f"{name}={_show(conn, name)}" for name in ("server_version", "synchronous_commit", "fsync"))
    try:
        _setup()
        from django.core.management import call_command
        from django.db import connection

        from audit.models import AuditEvent
        from audit.selectors import audit_chain_verify
        from audit.services import audit_record_request
        from synapse.audit_record import request_record

        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE bench_plain (LIKE audit_auditevent INCLUDING ALL)")
        print(f"PostgreSQL: {settings_line}; {os.cpu_count()} CPUs; {WRITERS} writers")

        plain = _plain_model()
        ctx = _context()
        for i in range(200):  # warm up connections, caches, plans
            audit_record_request(record=request_record(ctx))
            _plain_insert(plain, ctx, i)
        python = _timed(lambda i: _python_side(ctx), SEQUENTIAL)
        unchained = _timed(lambda i: _plain_insert(plain, ctx, 1000 + i), SEQUENTIAL)
        chained = _timed(lambda i: audit_record_request(record=request_record(ctx)), SEQUENTIAL)
        print(_describe("per request, Python side (hashes, digest)", python))
        print(_describe("per request, same INSERT without the chain", unchained))
        print(_describe("per request, audit_record_request (chained)", chained))
        connection.close()

        rate_plain = _throughput(chained=False)
        rate_chained = _throughput(chained=True)
        print(f"{WRITERS} writer processes, {SECONDS:.0f} s each:   without chain {rate_plain:8.0f} rows/s")
        print(f"{WRITERS} writer processes, {SECONDS:.0f} s each:   chained       {rate_chained:8.0f} rows/s (a commit per row)")
        for grouped, how in (("loop", "on the event loop, as a gateway worker"), ("thread", "through the writer thread")):
            commits = _commits()
            rate = _throughput(chained=True, grouped=grouped)
            # pg_stat_database lags up to a second behind the backends that just exited.
            time.sleep(1.5)
            per_commit = rate * SECONDS / max(1, _commits() - commits)
            print(
                f"{WRITERS} writer processes, {SECONDS:.0f} s each:   chained       {rate:8.0f} rows/s "
                f"(group commit {how}, {IN_FLIGHT} requests in flight per process; {per_commit:.1f} rows per commit)"
            )

        start = time.perf_counter()
        report = audit_chain_verify()
        elapsed = time.perf_counter() - start
        print(f"verify_audit: {report.line()[:60]}… in {elapsed:.2f} s ({report.events / elapsed:,.0f} rows/s)")
        print(f"rows in the chain: {AuditEvent.objects.count()}")
        connection.close()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


if __name__ == "__main__":
    main()
