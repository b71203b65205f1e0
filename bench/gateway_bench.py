"""Gateway overhead: latency and throughput through Synapse vs straight to the upstream.

Starts a fast fake upstream (uvicorn), a throwaway PostgreSQL database, and the real gateway
(gunicorn + 2 uvicorn workers), then prints figures. Nothing here asserts: these are
measurements. Run: `.venv/bin/python bench/gateway_bench.py` (PostgreSQL at 127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import governed_stack

DB_NAME = "synapse_bench_gateway"
STREAM_GAP_MS = os.environ.get("BENCH_STREAM_GAP_MS", "5")
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "Summarise the quarterly report in one line."}]}


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
    with governed_stack(DB_NAME) as stack:
        direct_url = f"{stack.upstream}/v1/chat/completions"
        gateway_url = f"{stack.gateway}/v1/chat/completions"
        auth = {"authorization": f"Bearer {stack.key}"}
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
        rss = worker_rss_mb(stack.gunicorn_pid)
        print(f"{'worker memory after the load':<34} " + ", ".join(f"{mb:.0f} MB" for mb in rss) + " RSS per worker")
        count = int(os.environ.get("BENCH_STREAMS", "100"))
        d_first, d_whole = asyncio.run(streams(direct_url, {}, count))
        g_first, g_whole = asyncio.run(streams(gateway_url, auth, count))
        print(f"== streams ({count} sequential, 40 words {STREAM_GAP_MS} ms apart; output DLP's hold-back window on)")
        print(describe("time to first token, direct", d_first))
        print(describe("time to first token, through", g_first))
        print(describe("whole stream, direct", d_whole))
        print(describe("whole stream, through", g_whole))


if __name__ == "__main__":
    main()
