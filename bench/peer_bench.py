"""Peer benchmark (issue 16): Synapse beside a bare Django view and LiteLLM, in one run.

Arms, all against the same fast fake upstream with a 1 KB chat prompt: direct to the upstream;
a bare Django async view forwarding with httpx (bench/bare_django, gunicorn + 2 uvicorn
workers, the floor of our design); LiteLLM proxy 1.100.5, 2 workers, in its own venv under
.synapse/bench-litellm (made here; never a project dependency); Synapse, 2 workers, PostgreSQL,
a key with rpm + tpm + budget set, durable audit. Per arm: the p50 of sequential requests
(added over direct) and req/s at 32 connections (wrk if installed, else an httpx loop), in
BENCH_ROUNDS rounds that run every arm once, in a rotating order, with every server up: medians
and per-round ratios are printed, so a machine whose speed drifts moves every arm alike.
For Synapse also commits, WAL flushes and OS threads started per request, and the time of one
durable single-row commit on the same PostgreSQL. Nothing is asserted: read docs/PERFORMANCE.md.

Run: `.venv/bin/python bench/peer_bench.py` (PostgreSQL at 127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import ADMIN_URL, BIN, ROOT, free_port, governed_stack, wait_http

DB_NAME = "synapse_bench_peer"
LITELLM_VERSION = "1.100.5"
LITELLM_VENV = ROOT / ".synapse" / "bench-litellm"
SEQUENTIAL = int(os.environ.get("BENCH_SEQUENTIAL", "300"))
LOAD_SECONDS = int(os.environ.get("BENCH_LOAD_SECONDS", "6"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = 32
COMMITS = 200
# ~1 KB prompt: what a short chat turn with a system prompt weighs.
BODY = json.dumps(
    {"model": "bench-model", "messages": [{"role": "user", "content": ("Summarise the quarterly report. " * 32)[:1000]}]}
).encode()
LIMITS = {"rpm": "100000000", "tpm": "1000000000", "budget": "1000000"}  # all counters on, never reached
JSON = {"content-type": "application/json"}
SYNAPSE = "Synapse (rpm + tpm + budget, durable audit)"


def sequential_p50(url: str, headers: dict[str, str]) -> float:
    timings = []
    with httpx.Client(timeout=30) as client:
        for i in range(20 + SEQUENTIAL):
            start = time.perf_counter()
            response = client.post(url, content=BODY, headers=headers)
            if i >= 20:
                timings.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
    return statistics.median(timings)


def throughput(url: str, headers: dict[str, str]) -> float:
    if shutil.which("wrk"):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            lua_headers = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
            script.write(f'wrk.method = "POST"\nwrk.body = [[{BODY.decode()}]]\n{lua_headers}')
        out = subprocess.run(
            ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{LOAD_SECONDS}s", "-s", script.name, url],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        os.unlink(script.name)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if errors:
            print(f"   ! {errors.group(1)} non-2xx answers at {url}")
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return asyncio.run(_httpx_load(url, headers))


async def _httpx_load(url: str, headers: dict[str, str]) -> float:
    done = 0
    deadline = time.monotonic() + LOAD_SECONDS
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=CONNECTIONS)) as client:

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                (await client.post(url, content=BODY, headers=headers)).raise_for_status()
                done += 1

        await asyncio.gather(*(loop() for _ in range(CONNECTIONS)))
    return done / LOAD_SECONDS


@contextmanager
def process(args: list[str], *, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def litellm_ready() -> str | None:
    """The LiteLLM venv's executable, installed on first use; None (and why) if it cannot be."""
    if os.environ.get("BENCH_LITELLM") == "0":
        print("   LiteLLM arm skipped: BENCH_LITELLM=0")
        return None
    exe = LITELLM_VENV / "bin" / "litellm"
    marker = LITELLM_VENV / f".installed-{LITELLM_VERSION}"
    if marker.exists():
        return str(exe)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, timeout=300)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
                       check=True, timeout=1200)  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"   LiteLLM arm skipped: installing litellm[proxy]=={LITELLM_VERSION} failed ({exc})")
        return None
    marker.touch()
    return str(exe)


def worker_pids(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class ThreadWatch:
    """Distinct thread ids seen in the workers while the load runs (sampled every ms): threads
    that live through a request show up; fewer than started, never more."""

    def __init__(self, pids: list[int]) -> None:
        self.pids, self.seen, self._stop = pids, set[str](), threading.Event()
        self.before = self._tids()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _tids(self) -> set[str]:
        return {f"{pid}/{tid}" for pid in self.pids for tid in os.listdir(f"/proc/{pid}/task")}

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.seen |= self._tids()
            time.sleep(0.001)

    def __enter__(self) -> ThreadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def reset(self) -> None:
        """Count from now on (after a warm-up that may start the pools' threads)."""
        self.before, self.seen = self._tids(), set()

    @property
    def started(self) -> int:
        return len(self.seen - self.before)


def memory_mb(master: int) -> tuple[float, float]:
    """RSS and PSS of the gunicorn master and its workers together, in MB. RSS counts the pages
    the workers share with the master (the preloaded tokenizer tables) once per process; PSS
    splits each shared page between its sharers, so its sum is the memory the instance takes."""
    totals = [0.0, 0.0]
    for pid in [master, *worker_pids(master)]:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                name, _, value = line.partition(":")
                if name in ("Rss", "Pss"):
                    totals[name == "Pss"] += int(value.split()[0]) / 1024
    return totals[0], totals[1]


def pg_counters(conn: psycopg.Connection, db: str) -> tuple[int, int]:
    time.sleep(1.2)  # backends report their statistics at most once a second
    commits = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (db,)).fetchone()
    wal = conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
    assert commits is not None and wal is not None
    return int(commits[0]), int(wal[0])


def commit_ms(database_url: str) -> float:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
        timings = []
        for _ in range(COMMITS):
            start = time.perf_counter()
            conn.execute("INSERT INTO bench_commit DEFAULT VALUES")  # autocommit: one durable commit
            timings.append((time.perf_counter() - start) * 1000)
        conn.execute("DROP TABLE bench_commit")
    return statistics.median(timings)


@dataclass
class Arm:
    name: str
    url: str
    headers: dict[str, str]
    p50: list[float] = field(default_factory=list)  # one per round
    rps: list[float] = field(default_factory=list)


def _litellm(stack_upstream: str, stack: ExitStack) -> Arm | None:
    exe = litellm_ready()
    if not exe:
        return None
    port = free_port()
    config = ROOT / ".synapse" / "bench-litellm.yaml"
    params = {"model": "openai/bench-model", "api_base": stack_upstream + "/v1", "api_key": "bench"}
    config.write_text(json.dumps({"model_list": [{"model_name": "bench-model", "litellm_params": params}]}))
    stack.enter_context(
        process(
            [exe, "--config", str(config), "--port", str(port), "--host", "127.0.0.1", "--num_workers", "2",
             "--telemetry", "False"],
            env={"LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION"},
        )
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.5)
    # uvicorn's supervisor restarts a worker that starts slowly (LiteLLM imports for seconds):
    # the first answer may come from one worker while the other restarts.
    time.sleep(15)
    arm = Arm(f"LiteLLM proxy {LITELLM_VERSION}", f"http://127.0.0.1:{port}/v1/chat/completions", JSON)
    httpx.post(arm.url, content=BODY, headers=arm.headers, timeout=30).raise_for_status()  # it answers, or the arm is skipped
    return arm


def _measure(arm: Arm) -> None:
    arm.p50.append(sequential_p50(arm.url, arm.headers))
    arm.rps.append(throughput(arm.url, arm.headers))


def main() -> None:
    with governed_stack(DB_NAME, limits=LIMITS) as stack, ExitStack() as servers:
        direct = Arm("direct to the upstream", stack.upstream + "/v1/chat/completions", JSON)
        port = free_port()
        servers.enter_context(
            process(
                [str(BIN / "gunicorn"), "bench.bare_django.asgi:application", "-k", "synapse.worker.SynapseWorker",
                 "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "error"],
                env={"BENCH_UPSTREAM": stack.upstream, "DJANGO_SETTINGS_MODULE": "bench.bare_django.settings"},
            )
        )  # fmt: skip
        bare = Arm("bare Django async view + httpx", f"http://127.0.0.1:{port}/v1/chat/completions", JSON)
        wait_http(bare.url, {200, 405})
        litellm = None
        try:
            litellm = _litellm(stack.upstream, servers)
        except (httpx.HTTPError, subprocess.CalledProcessError) as exc:
            print(f"   LiteLLM arm skipped: {exc}")
        synapse = Arm(SYNAPSE, stack.gateway + "/v1/chat/completions", {**JSON, "authorization": f"Bearer {stack.key}"})
        arms = [arm for arm in (direct, bare, litellm, synapse) if arm is not None]
        database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}"
        commits = wal = requests = 0
        with psycopg.connect(ADMIN_URL, autocommit=True) as stats, ThreadWatch(worker_pids(stack.gunicorn_pid)) as watch:
            sequential_p50(synapse.url, synapse.headers)  # warm both workers (tokenizer, pool) before counting
            watch.reset()
            for round_ in range(ROUNDS):
                # Every arm once a round, in a rotating order: a machine whose speed drifts (shared
                # cores) then moves every arm alike, and each round's ratios compare like with like.
                order = arms[round_ % len(arms) :] + arms[: round_ % len(arms)]
                print(f"== round {round_ + 1}/{ROUNDS}: " + ", ".join(arm.name for arm in order))
                for arm in order:
                    if arm is synapse:
                        n0 = _audit_rows(database_url)  # before the counters: its own transaction is not counted
                        commits0, wal0 = pg_counters(stats, DB_NAME)
                        _measure(arm)
                        commits1, wal1 = pg_counters(stats, DB_NAME)
                        requests += _audit_rows(database_url) - n0
                        commits, wal = commits + commits1 - commits0, wal + wal1 - wal0
                    else:
                        _measure(arm)
            rss, pss = memory_mb(stack.gunicorn_pid)
        single_commit = commit_ms(database_url)
    _report(arms, direct, bare, litellm, synapse)
    print(f"\nsingle-row durable commit on the same PostgreSQL: median {single_commit:.2f} ms")
    print(f"Synapse per request ({requests} requests): {commits / requests:.2f} commits "
          "(pg_stat_database.xact_commit: every transaction, read-only ones included), "
          f"{wal / requests:.2f} WAL flushes (pg_stat_wal.wal_sync, cluster-wide), "
          f"{watch.started / requests:.2f} OS threads started (seen in /proc, a lower bound)")  # fmt: skip
    print(f"Synapse memory after the load, master + 2 workers: "
          f"{pss:.0f} MB PSS ({rss:.0f} MB RSS, shared pages counted once per process)")  # fmt: skip
    floor = statistics.median(b - d + 1 + single_commit for b, d in zip(bare.p50, direct.p50, strict=True))
    added = statistics.median(s - d for s, d in zip(synapse.p50, direct.p50, strict=True))
    print(f"Synapse vs bare Django: added p50 {added:.1f} ms (goal ≤ {floor:.1f} ms); "
          f"throughput {_ratio(synapse.rps, bare.rps):.0%} (goal ≥ 90 %)")  # fmt: skip
    if litellm is not None:
        print(f"Synapse vs LiteLLM: throughput {_ratio(synapse.rps, litellm.rps):.2f}× (goal ≥ 3×)")


def _ratio(ours: list[float], theirs: list[float]) -> float:
    """The median of the rounds' ratios: each round's arms ran minutes apart, not the whole run."""
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def _report(arms: list[Arm], direct: Arm, bare: Arm, litellm: Arm | None, synapse: Arm) -> None:
    print(
        f"\nMedians of {ROUNDS} rounds (each round: every arm, {SEQUENTIAL} sequential requests, then "
        f"{LOAD_SECONDS} s at {CONNECTIONS} connections); per-round figures in brackets."
    )
    print(f"\n| arm | added p50 over direct | req/s at {CONNECTIONS} connections |\n|---|---|---|")
    for arm in arms:
        added = [p - d for p, d in zip(arm.p50, direct.p50, strict=True)]
        shown = "0" if arm is direct else f"+{statistics.median(added):.1f} ms"
        rounds = " / ".join(f"{r:,.0f}" for r in arm.rps)
        print(
            f"| {arm.name} | {shown} (p50 {statistics.median(arm.p50):.1f} ms) | {statistics.median(arm.rps):,.0f} [{rounds}] |"
        )
    ratios = " / ".join(f"{a / b:.0%}" for a, b in zip(synapse.rps, bare.rps, strict=True))
    print(f"\nSynapse / bare Django throughput per round: {ratios}")
    if litellm is not None:
        ratios = " / ".join(f"{a / b:.2f}×" for a, b in zip(synapse.rps, litellm.rps, strict=True))
        print(f"Synapse / LiteLLM throughput per round: {ratios}")


def _audit_rows(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM audit_auditevent").fetchone()
    assert row is not None
    return int(row[0])


if __name__ == "__main__":
    main()
