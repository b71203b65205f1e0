"""gunicorn settings for the production command (`gunicorn synapse.asgi:application -c synapse/gunicorn_conf.py`).

Per instance (several masters may share a host): its own Prometheus multiprocess directory and
its own control socket, both under one runtime directory created here, so two gateways never
mix metrics or answer each other's `gunicornc`.
"""

import os
import shutil
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from synapse.logs import logging_config

bind = f"{os.environ.get('SYNAPSE_BIND', '0.0.0.0')}:{os.environ.get('SYNAPSE_PORT', '8080')}"
workers = int(os.environ.get("SYNAPSE_WORKERS", "2"))
# uvicorn[standard] (httptools + uvloop): the pure-h11 path stalled proxied requests ~40 ms here.
worker_class = "synapse.worker.SynapseWorker"
# Streams can last minutes; the worker heartbeat is separate from request time under uvicorn.
timeout = int(os.environ.get("SYNAPSE_WORKER_TIMEOUT", "120"))
# On SIGTERM each worker stops accepting and finishes its in-flight requests and streams; after
# this many seconds the master kills what is left. Kubernetes' terminationGracePeriodSeconds
# must exceed it plus the preStop delay (deploy/kubernetes).
graceful_timeout = int(os.environ.get("SYNAPSE_GRACEFUL_TIMEOUT", "60"))
keepalive = 5
# The application — and in `when_ready` the tokenizer tables (~113 MB) — load once in the master
# before the workers fork, so the workers share those pages instead of each loading a copy.
# SYNAPSE_PRELOAD=0 loads in each worker instead (then a SIGHUP reloads changed code).
preload_app = os.environ.get("SYNAPSE_PRELOAD", "1") != "0"

# Logs: one format (SYNAPSE_LOG_FORMAT) for gunicorn, uvicorn and Django. The gateway writes its
# own line per /v1 request (logger synapse.request); the access log is extra and off by default.
_access_log = os.environ.get("SYNAPSE_ACCESS_LOG", "0") == "1"
logconfig_dict = logging_config(gunicorn=True, access_log=_access_log)
accesslog = "-" if _access_log else None

# The instance's runtime directory: metrics files and the control socket.
# A reload (SIGHUP) reads this file again in the same master: keep the directory it made.
_made_here = not os.environ.get("SYNAPSE_RUNTIME_DIR")
if _made_here and not os.environ.get("_SYNAPSE_INSTANCE_DIR"):
    os.environ["_SYNAPSE_INSTANCE_DIR"] = tempfile.mkdtemp(prefix="synapse-gunicorn-")
_runtime_dir = os.environ.get("SYNAPSE_RUNTIME_DIR") or os.environ["_SYNAPSE_INSTANCE_DIR"]
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(_runtime_dir, "metrics")
os.makedirs(_metrics_dir, mode=0o700, exist_ok=True)
# Set before the workers fork and import prometheus_client: they inherit it.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
control_socket = os.environ.get("SYNAPSE_CONTROL_SOCKET") or os.path.join(_runtime_dir, "gunicorn.ctl")


def _clear_metrics() -> None:
    for name in os.listdir(_metrics_dir):
        if name.endswith(".db"):
            os.remove(os.path.join(_metrics_dir, name))


def on_starting(server: Any) -> None:  # gunicorn (no type information) passes its Arbiter
    # Counts left by a previous master would be summed into this one's: start empty.
    _clear_metrics()
    server.log.info("metrics in %s, control socket %s", _metrics_dir, control_socket)


def when_ready(server: Any) -> None:
    if not preload_app:
        return
    import gc

    from teams.tokens import warm_up

    warm_up()
    # Nothing loaded so far is garbage: keep the collector from touching (and so copying) it
    # in every worker.
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    # Its live gauges go; its counters and histograms stay in the sums.
    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def on_exit(server: Any) -> None:
    _clear_metrics()
    if _made_here:
        shutil.rmtree(_runtime_dir, ignore_errors=True)
