"""Gateway overhead: latency and throughput through Synapse vs straight to the upstream.

Starts a fast fake upstream (uvicorn), a throwaway PostgreSQL database, and the real gateway
(gunicorn + 2 uvicorn workers), then prints figures. Nothing here asserts: these are
measurements. Run: `.venv/bin/python bench/gateway_bench.py` (PostgreSQL at 127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB_NAME = "synapse_bench_gateway"
DATABASE_URL = ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}"
STREAM_GAP_MS = os.environ.get("BENCH_STREAM_GAP_MS", "5")
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "Summarise the quarterly report in one line."}]}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, ok: set[int]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code in ok:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


async def sequential(url: str, headers: dict[str, str], n: int) -> list[float]:
    timings = []
    async with httpx.AsyncClient() as client:
        for _ in range(20):
            await client.post(url, json=BODY, headers=headers)
        for _ in range(n):
            start = time.perf_counter()
            response = await client.post(url, json=BODY, headers=headers)
            timings.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.text
    return timings


async def throughput(url: str, headers: dict[str, str], total: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                response = await client.post(url, json=BODY, headers=headers)
                assert response.status_code == 200, response.text

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - start)


async def streams(url: str, headers: dict[str, str], n: int) -> tuple[list[float], list[float]]:
    """Time to the first non-empty content delta, and to the end, of `n` sequential streams."""
    first, whole = [], []
    body = {**BODY, "stream": True}
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(n):
            start = time.perf_counter()
            seen = False
            async with client.stream("POST", url, json=body, headers=headers) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if (
                        not seen
                        and line.startswith("data: {")
                        and '"content":"' in line.replace(" ", "")
                        and '"content":""' not in line
                    ):
                        first.append((time.perf_counter() - start) * 1000)
                        seen = True
            whole.append((time.perf_counter() - start) * 1000)
    return first, whole


def worker_rss_mb(master: int) -> list[float]:
    """Resident memory of the gunicorn master's worker processes (Linux /proc)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    sizes = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


def describe(label: str, timings: list[float]) -> str:
    timings = sorted(timings)
    p50 = statistics.median(timings)
    p95 = timings[int(len(timings) * 0.95)]
    return f"{label:<34} p50 {p50:6.2f} ms   p95 {p95:6.2f} ms"


def main() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    env = {
        **os.environ,
        "DATABASE_URL": DATABASE_URL,
        "SYNAPSE_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnop",
        "SYNAPSE_LOG_LEVEL": "ERROR",
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        up_port, gw_port = free_port(), free_port()
        processes.append(
            subprocess.Popen(
                [str(BIN / "uvicorn"), "bench.fast_upstream:app", "--port", str(up_port), "--log-level", "error"],
                cwd=ROOT,
            )
        )
        manage = [str(BIN / "python"), "manage.py"]
        subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        routing = ROOT / ".synapse" / "bench-routing.yaml"
        routing.parent.mkdir(exist_ok=True)
        routing.write_text(
            json.dumps(
                {
                    "backends": [
                        {"name": "bench", "kind": "vllm", "base_url": f"http://127.0.0.1:{up_port}/v1", "location": "on_prem"}
                    ],
                    "models": [{"name": "bench-model", "backend": "bench"}],
                }
            )
        )
        subprocess.run([*manage, "import_routing", str(routing)], cwd=ROOT, env=env, check=True, capture_output=True)
        issued = subprocess.run(
            [*manage, "issue_key", "--team", "bench", "--create-team", "--name", "bench", "--models", "bench-model",
             "--classification", "sensitive", "--system-prompt", "You are a benchmark.", "--json"],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        key = json.loads(issued.stdout)["key"]
        processes.append(
            subprocess.Popen(
                [str(BIN / "gunicorn"), "synapse.asgi:application", "-c", "synapse/gunicorn_conf.py"],
                cwd=ROOT,
                env={**env, "SYNAPSE_PORT": str(gw_port), "SYNAPSE_BIND": "127.0.0.1", "SYNAPSE_WORKERS": "2"},
            )
        )
        wait_http(f"http://127.0.0.1:{up_port}/v1/chat/completions", {200, 405})
        wait_http(f"http://127.0.0.1:{gw_port}/v1/models", {401})

        direct_url = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        gateway_url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        auth = {"authorization": f"Bearer {key}"}
        n = int(os.environ.get("BENCH_REQUESTS", "500"))
        direct = asyncio.run(sequential(direct_url, {}, n))
        through = asyncio.run(sequential(gateway_url, auth, n))
        print(f"== gateway overhead ({n} sequential requests, PostgreSQL, 2 workers, full pipeline incl. audit row)")
        print(describe("direct to upstream", direct))
        print(describe("through Synapse", through))
        print(f"{'added by Synapse (p50)':<34} {statistics.median(through) - statistics.median(direct):6.2f} ms")
        total = int(os.environ.get("BENCH_THROUGHPUT_REQUESTS", "3000"))
        rate = asyncio.run(throughput(gateway_url, auth, total, 32))
        print(
            f"{'throughput through Synapse':<34} {rate:7.0f} req/s  ({total} requests, 32 in flight, load generator on the same 2 cores)"
        )
        rss = worker_rss_mb(processes[-1].pid)
        print(f"{'worker memory after the load':<34} " + ", ".join(f"{mb:.0f} MB" for mb in rss) + " RSS per worker")
        count = int(os.environ.get("BENCH_STREAMS", "100"))
        d_first, d_whole = asyncio.run(streams(direct_url, {}, count))
        g_first, g_whole = asyncio.run(streams(gateway_url, auth, count))
        print(f"== streams ({count} sequential, 40 words {STREAM_GAP_MS} ms apart; output DLP's hold-back window on)")
        print(describe("time to first token, direct", d_first))
        print(describe("time to first token, through", g_first))
        print(describe("whole stream, direct", d_whole))
        print(describe("whole stream, through", g_whole))
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=10)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


if __name__ == "__main__":
    main()
