"""Small requests alone, then under a hostile mix, in one run: how much do attackers cost others?

The mix (issue 14, finding 4): senders of huge digit-and-separator prompts just under the DLP
scan cap (the worst input for the decoders), connections trickling their headers a byte a
second, and a flood of streams on a key past its `max_concurrent`. Meanwhile one client sends
small chat requests one after another on the benchmark's own key; their p50/p99 alone and
under the mix, and the ratio, are what this prints. Nothing is asserted: these are measurements.

    .venv/bin/python bench/hostile_bench.py               # the gateway's bounds as configured
    .venv/bin/python bench/hostile_bench.py --unbounded   # DLP size cap and time budget off
    .venv/bin/python bench/hostile_bench.py --only flood,trickle   # some attackers only

PostgreSQL at 127.0.0.1:5432 (a throwaway database); gunicorn + 2 uvicorn workers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import BIN, ROOT, Stack, governed_stack

DB_NAME = "synapse_bench_hostile"
SMALL = {"model": "bench-model", "messages": [{"role": "user", "content": "Summarise the quarterly report in one line."}]}
SCAN_CAP = 4 * 1024 * 1024  # the default SYNAPSE_DLP_MAX_SCAN_BYTES
HOSTILE_SENDERS = 4
TRICKLERS = 200
FLOOD_THREADS = 24
FLOOD_LIMIT = 4
SETTLE_SECONDS = 5.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def small_requests(stack: Stack, n: int, deadline: float) -> list[float]:
    timings = []
    headers = {"authorization": f"Bearer {stack.key}"}
    with httpx.Client(base_url=stack.gateway, timeout=120) as client:
        for _ in range(n):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            response = client.post("/v1/chat/completions", json=SMALL, headers=headers)
            timings.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                print(f"  small request answered {response.status_code}: {response.text[:200]}")
    return timings


def hostile_body(size: int) -> bytes:
    rng = random.Random(14)
    digits = "".join(rng.choice("0123456789-., :|/") for _ in range(size))
    return json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": digits}]}).encode()


class Mix:
    """The attackers, each in its own threads until `stop()`."""

    def __init__(self, stack: Stack, flood_key: str, body: bytes, kinds: set[str]) -> None:
        self.stack, self.flood_key, self.body, self.kinds = stack, flood_key, body, kinds
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.hostile: Counter[str] = Counter()
        self.hostile_seconds: list[float] = []
        self.flood: Counter[str] = Counter()
        self.trickle_closed = 0
        self.trickle_open_seconds: list[float] = []
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        targets = (
            [self._hostile] * HOSTILE_SENDERS * ("prompts" in self.kinds)
            + [self._flood] * FLOOD_THREADS * ("flood" in self.kinds)
            + [self._trickle] * ("trickle" in self.kinds)
        )
        for target in targets:
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=130)

    def report(self) -> dict[str, object]:
        return {
            "hostile": dict(self.hostile),
            "hostile_seconds": self.hostile_seconds,
            "flood": dict(self.flood),
            "trickle_closed": self.trickle_closed,
            "trickle_open_seconds": self.trickle_open_seconds,
        }

    def _hostile(self) -> None:
        headers = {"authorization": f"Bearer {self.stack.key}", "content-type": "application/json"}
        with httpx.Client(base_url=self.stack.gateway, timeout=300) as client:
            while not self.stopping.is_set():
                started = time.perf_counter()
                try:
                    response = client.post("/v1/chat/completions", content=self.body, headers=headers)
                    outcome = f"{response.status_code} {response.json().get('error', {}).get('code', '')}".strip()
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with self.lock:
                    self.hostile[outcome] += 1
                    self.hostile_seconds.append(time.perf_counter() - started)

    def _flood(self) -> None:
        headers = {"authorization": f"Bearer {self.flood_key}"}
        with httpx.Client(base_url=self.stack.gateway, timeout=60) as client:
            while not self.stopping.is_set():
                try:
                    with client.stream("POST", "/v1/chat/completions", json={**SMALL, "stream": True}, headers=headers) as r:
                        for _ in r.iter_bytes():
                            pass
                        code = r.status_code
                except httpx.HTTPError:
                    code = 0
                with self.lock:
                    self.flood[str(code)] += 1

    def _trickle(self) -> None:
        host, port = self.stack.gateway.removeprefix("http://").split(":")
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}"
        # Each connection: (socket, bytes sent, opened at). Closed ones are replaced at once.
        conns: list[tuple[socket.socket, int, float]] = []
        while not self.stopping.is_set():
            while len(conns) < TRICKLERS:
                sock = socket.create_connection((host, int(port)))
                sock.setblocking(False)
                conns.append((sock, 0, time.monotonic()))
            kept = []
            for sock, sent, opened in conns:
                try:
                    sock.recv(4096)
                    closed = True  # an answer (408) or EOF: the server is done with it
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if not closed:
                    try:
                        sock.send(head[sent % len(head) : sent % len(head) + 1])
                    except OSError:
                        closed = True
                if closed:
                    sock.close()
                    with self.lock:
                        self.trickle_closed += 1
                        self.trickle_open_seconds.append(time.monotonic() - opened)
                else:
                    kept.append((sock, sent + 1, opened))
            conns = kept
            self.stopping.wait(1.0)
        for sock, _, _ in conns:
            sock.close()


def run_mix(stack: Stack, flood_key: str, body: bytes, kinds: set[str], stop: Any, results: Any) -> None:
    """The attackers in a process of their own: their threads must not slow the measuring client."""
    mix = Mix(stack, flood_key, body, kinds)
    mix.start()
    stop.wait()
    mix.stop()
    results.put(mix.report())


def issue_flood_key(stack: Stack) -> str:
    issued = subprocess.run(
        [str(BIN / "python"), "manage.py", "issue_key", "--team", "bench", "--name", "flood", "--models", "bench-model",
         "--classification", "sensitive", "--system-prompt", "You are a benchmark.", "--max-concurrent", str(FLOOD_LIMIT),
         "--json"],
        cwd=ROOT, env=stack.env, capture_output=True, text=True,
    )  # fmt: skip
    if issued.returncode != 0:
        raise RuntimeError(f"issue_key failed: {issued.stderr[-2000:]}")
    return str(json.loads(issued.stdout)["key"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unbounded", action="store_true", help="turn the DLP size cap and time budget off")
    parser.add_argument("--requests", type=int, default=200, help="small requests per phase")
    parser.add_argument("--seconds", type=float, default=120, help="most seconds per phase")
    parser.add_argument("--only", default="prompts,flood,trickle", help="which attackers, comma-separated")
    args = parser.parse_args()
    kinds = set(args.only.split(","))
    extra = {"SYNAPSE_DLP_MAX_SCAN_BYTES": "0", "SYNAPSE_DLP_TIME_BUDGET_MS": "0"} if args.unbounded else {}
    size = SCAN_CAP - 64 * 1024  # under the cap with the body's other fields: scanned, not refused unscanned
    print(f"attackers: {', '.join(sorted(kinds))}; hostile prompt {size / 1e6:.1f} MB of digits and separators")
    print(f"DLP bounds {'off' if args.unbounded else 'on'}")
    body = hostile_body(size)
    with governed_stack(DB_NAME, extra_env=extra) as stack:
        flood_key = issue_flood_key(stack)
        small_requests(stack, 20, time.monotonic() + 60)  # warm-up
        alone = small_requests(stack, args.requests, time.monotonic() + args.seconds)
        context = multiprocessing.get_context("fork")
        stop, results = context.Event(), context.Queue()
        attackers = context.Process(target=run_mix, args=(stack, flood_key, body, kinds, stop, results))
        attackers.start()
        time.sleep(SETTLE_SECONDS)
        under = small_requests(stack, args.requests, time.monotonic() + args.seconds)
        stop.set()
        mix: dict[str, Any] = results.get(timeout=300)
        attackers.join()

    print(
        f"small requests alone      : n={len(alone)} p50 {statistics.median(alone):7.1f} ms  p99 {percentile(alone, 0.99):7.1f} ms"
    )
    print(
        f"small requests, hostile mix: n={len(under)} p50 {statistics.median(under):7.1f} ms  p99 {percentile(under, 0.99):7.1f} ms"
    )
    print(
        f"ratio (mix / alone)       : p50 {statistics.median(under) / statistics.median(alone):.1f}x  "
        f"p99 {percentile(under, 0.99) / percentile(alone, 0.99):.1f}x"
    )
    hostile_median = statistics.median(mix["hostile_seconds"]) if mix["hostile_seconds"] else float("nan")
    print(f"hostile prompts ({HOSTILE_SENDERS} senders): {mix['hostile']}; median {hostile_median:.1f} s each")
    print(f"flood ({FLOOD_THREADS} streams on a key with max_concurrent {FLOOD_LIMIT}): {mix['flood']}")
    opened = mix["trickle_open_seconds"]
    open_median = statistics.median(opened) if opened else float("nan")
    closed = mix["trickle_closed"]
    print(f"trickling connections ({TRICKLERS} kept open): {closed} closed by the gateway, median {open_median:.1f} s open")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
