"""The three chat doors side by side: /v1/chat/completions, /v1/responses, /v1/messages.

Same run, same fake upstream (chat completions, as vLLM speaks it), same key: what each door's
translation adds on top of the governed pipeline — added latency over the upstream answering
directly, and time to first token / whole stream. Nothing asserts: these are measurements.
Run: `.venv/bin/python bench/doors_bench.py` (PostgreSQL at 127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gateway_bench import describe, worker_rss_mb  # noqa: E402
from bench.stack import governed_stack  # noqa: E402

DB_NAME = "synapse_bench_doors"
PROMPT = "Summarise the quarterly report in one line."

# door: (path, body, "is this SSE line the first content?")
DOORS: dict[str, tuple[str, dict[str, Any], Callable[[str], bool]]] = {
    "chat.completions": (
        "/v1/chat/completions",
        {"model": "bench-model", "messages": [{"role": "user", "content": PROMPT}]},
        lambda line: line.startswith("data:{") and '"content":"' in line and '"content":""' not in line,
    ),
    "responses": (
        "/v1/responses",
        {"model": "bench-model", "input": PROMPT},
        lambda line: line.startswith("data:{") and '"type":"response.output_text.delta"' in line,
    ),
    "messages": (
        "/v1/messages",
        {"model": "bench-model", "max_tokens": 256, "messages": [{"role": "user", "content": PROMPT}]},
        lambda line: line.startswith("data:{") and '"type":"text_delta"' in line,
    ),
}


async def interleaved(arms: dict[str, tuple[str, dict[str, Any], dict[str, str]]], n: int) -> dict[str, list[float]]:
    """n sequential requests per arm, taking turns, so drift on a shared machine hits every arm alike."""
    timings: dict[str, list[float]] = {name: [] for name in arms}
    async with httpx.AsyncClient(timeout=30) as client:
        for round_ in range(n + 20):
            for name, (url, body, headers) in arms.items():
                start = time.perf_counter()
                response = await client.post(url, json=body, headers=headers)
                elapsed = (time.perf_counter() - start) * 1000
                assert response.status_code == 200, response.text
                if round_ >= 20:  # the first rounds warm connections and caches
                    timings[name].append(elapsed)
    return timings


async def streams(
    url: str, body: dict[str, Any], headers: dict[str, str], first_content: Callable[[str], bool], n: int
) -> tuple[list[float], list[float]]:
    first, whole = [], []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(n):
            start = time.perf_counter()
            seen = False
            async with client.stream("POST", url, json={**body, "stream": True}, headers=headers) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if not seen and first_content(line.replace(" ", "")):
                        first.append((time.perf_counter() - start) * 1000)
                        seen = True
            assert seen, f"no content event from {url}"
            whole.append((time.perf_counter() - start) * 1000)
    return first, whole


def main() -> None:
    with governed_stack(DB_NAME) as stack:
        auth = {"authorization": f"Bearer {stack.key}"}
        n = int(os.environ.get("BENCH_REQUESTS", "300"))
        count = int(os.environ.get("BENCH_STREAMS", "60"))
        direct_url = f"{stack.upstream}/v1/chat/completions"
        _, chat_body, chat_first = DOORS["chat.completions"]
        arms: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {"direct": (direct_url, chat_body, {})}
        arms.update({door: (f"{stack.gateway}{path}", body, auth) for door, (path, body, _) in DOORS.items()})
        timings = asyncio.run(interleaved(arms, n))
        direct = statistics.median(timings["direct"])
        d_first, _ = asyncio.run(streams(direct_url, chat_body, {}, chat_first, count))
        print(f"== the three doors ({n} sequential requests each, interleaved; {count} sequential streams each; PostgreSQL, 2 workers)")
        print(f"{'direct to upstream (chat)':<34} p50 {direct:6.2f} ms")
        print(describe("stream TTFT, direct", d_first))
        base: dict[str, float] = {}
        for door, (path, body, first_content) in DOORS.items():
            first, whole = asyncio.run(streams(f"{stack.gateway}{path}", body, auth, first_content, count))
            added = statistics.median(timings[door]) - direct
            base.setdefault("added", added)
            base.setdefault("ttft", statistics.median(first))
            print(f"-- {door}")
            print(describe("  whole answer", timings[door]))
            print(f"{'  added over direct (p50)':<34} {added:6.2f} ms   ({added / base['added']:.2f}x chat's)")
            print(describe("  stream TTFT", first) + f"   ({statistics.median(first) / base['ttft']:.2f}x chat's)")
            print(describe("  whole stream", whole))
        print(f"{'worker memory after the runs':<34} " + ", ".join(f"{mb:.0f} MB" for mb in worker_rss_mb(stack.gunicorn_pid)))


if __name__ == "__main__":
    main()
