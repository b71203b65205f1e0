"""The stack a gateway benchmark measures: a throwaway PostgreSQL database, the fast fake
upstream, routing to it, one sensitive key, and the real gateway (gunicorn + 2 uvicorn workers)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True)
class Stack:
    upstream: str  # http://127.0.0.1:PORT (the fake; /v1/chat/completions)
    gateway: str  # http://127.0.0.1:PORT
    key: str
    gunicorn_pid: int
    env: dict[str, str]  # what the gateway runs with (DATABASE_URL, ...), for further manage.py calls


def free_port() -> int:
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


@contextmanager
def governed_stack(
    db_name: str, *, workers: int = 2, limits: dict[str, str] | None = None, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """`limits`: issue_key's limit flags for the key, e.g. {"rpm": "1000000", "budget": "1000000"};
    `extra_env`: settings for the gateway, e.g. {"SYNAPSE_DLP_TIME_BUDGET_MS": "0"}."""
    database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{db_name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {db_name}")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SYNAPSE_SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnop",
        "SYNAPSE_LOG_LEVEL": "ERROR",
        **(extra_env or {}),
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        up_port, gw_port = free_port(), free_port()
        processes.append(
            subprocess.Popen(
                [str(BIN / "uvicorn"), "bench.fast_upstream:app", "--port", str(up_port), "--log-level", "error"], cwd=ROOT
            )
        )
        manage = [str(BIN / "python"), "manage.py"]
        subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        routing = ROOT / ".synapse" / f"{db_name}-routing.yaml"
        routing.parent.mkdir(exist_ok=True)
        backend = {"name": "bench", "kind": "vllm", "base_url": f"http://127.0.0.1:{up_port}/v1", "location": "on_prem"}
        routing.write_text(json.dumps({"backends": [backend], "models": [{"name": "bench-model", "backend": "bench"}]}))
        subprocess.run([*manage, "import_routing", str(routing)], cwd=ROOT, env=env, check=True, capture_output=True)
        issued = subprocess.run(
            [*manage, "issue_key", "--team", "bench", "--create-team", "--name", "bench", "--models", "bench-model",
             "--classification", "sensitive", "--system-prompt", "You are a benchmark.", "--json",
             *[arg for flag, value in (limits or {}).items() for arg in (f"--{flag}", value)]],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        processes.append(
            subprocess.Popen(
                [str(BIN / "gunicorn"), "synapse.asgi:application", "-c", "synapse/gunicorn_conf.py"],
                cwd=ROOT,
                env={**env, "SYNAPSE_PORT": str(gw_port), "SYNAPSE_BIND": "127.0.0.1", "SYNAPSE_WORKERS": str(workers)},
            )
        )
        wait_http(f"http://127.0.0.1:{up_port}/v1/chat/completions", {200, 405})
        wait_http(f"http://127.0.0.1:{gw_port}/v1/models", {401})
        yield Stack(
            upstream=f"http://127.0.0.1:{up_port}",
            gateway=f"http://127.0.0.1:{gw_port}",
            key=json.loads(issued.stdout)["key"],
            gunicorn_pid=processes[-1].pid,
            env=env,
        )
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=10)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
