"""Start-up and memory: time from `gunicorn` to the first served request, and RSS per process.

Creates (and drops) its own PostgreSQL database, migrates it with `migrate_locked`, issues a key
with `bootstrap`, then starts the production command (gunicorn, synapse/gunicorn_conf.py,
SYNAPSE_WORKERS workers, default 2) and prints: seconds to the first `/healthz` 200, to the
first `/readyz` 200 and to the first answered `/v1` request; RSS of the master and of each
worker right after start and after 200 requests. Nothing here asserts: these are measurements.
Run: `.venv/bin/python bench/startup_bench.py` (PostgreSQL at 127.0.0.1:5432).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB_NAME = "synapse_bench_startup"
DATABASE_URL = ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}"
WORKERS = os.environ.get("SYNAPSE_WORKERS", "2")
ENV = {
    **os.environ,
    "DATABASE_URL": DATABASE_URL,
    "SYNAPSE_SECRET_KEY": "bench-secret-key-not-for-production-0123456789",
    "AUDIT_HASH_KEY": "bench:bench-audit-hash-key",
    "SYNAPSE_ADMIN_PASSWORD": "bench-admin-password",
    "SYNAPSE_WORKERS": WORKERS,
    "SYNAPSE_LOG_LEVEL": "WARNING",
    "DJANGO_SETTINGS_MODULE": "synapse.settings",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def until(url: str, started: float, *, status: int = 200) -> float:
    while time.monotonic() - started < 60:
        try:
            if httpx.get(url, timeout=2).status_code == status:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} never answered {status}")


def main() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
        admin.execute(f"CREATE DATABASE {DB_NAME}")
    try:
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate_locked", "-v", "0"], cwd=ROOT, env=ENV, check=True)
        bootstrap = subprocess.run([*manage, "bootstrap", "--json"], cwd=ROOT, env=ENV, check=True, capture_output=True)
        key = json.loads(bootstrap.stdout)["key"]
        port = free_port()
        started = time.monotonic()
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "synapse.asgi:application", "-c", "synapse/gunicorn_conf.py", "-b", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=ENV,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            healthy = until(f"{base}/healthz", started)
            ready = until(f"{base}/readyz", started)
            body = {"model": "mock-small", "messages": [{"role": "user", "content": "hello"}]}
            headers = {"authorization": f"Bearer {key}"}
            while httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=30).status_code != 200:
                time.sleep(0.02)
            served = time.monotonic() - started
            print(f"workers: {WORKERS}")
            print(f"first /healthz 200: {healthy:5.2f} s   first /readyz 200: {ready:5.2f} s   first /v1 answer: {served:5.2f} s")
            time.sleep(2)  # let every worker finish its start-up (tokenizers load in the background)
            workers = children(process.pid)
            sizes = ", ".join(f"{rss_mb(p):6.1f} MB" for p in workers)
            print(f"RSS after start:   master {rss_mb(process.pid):6.1f} MB, workers {sizes}")
            with httpx.Client(headers={**headers, "connection": "close"}) as client:
                for _ in range(200):
                    client.post(f"{base}/v1/chat/completions", json=body, timeout=30)
            sizes = ", ".join(f"{rss_mb(p):6.1f} MB" for p in workers)
            print(f"RSS after 200 req: master {rss_mb(process.pid):6.1f} MB, workers {sizes}")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


if __name__ == "__main__":
    main()
