"""gunicorn settings for the production command (`gunicorn synapse.asgi:application -c synapse/gunicorn_conf.py`)."""

import os

bind = f"{os.environ.get('SYNAPSE_BIND', '0.0.0.0')}:{os.environ.get('SYNAPSE_PORT', '8080')}"
workers = int(os.environ.get("SYNAPSE_WORKERS", "2"))
# uvicorn[standard] (httptools + uvloop): the pure-h11 path stalled proxied requests ~40 ms here.
worker_class = "uvicorn_worker.UvicornWorker"
# Streams can last minutes; the worker heartbeat is separate from request time under uvicorn.
timeout = int(os.environ.get("SYNAPSE_WORKER_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
accesslog = "-" if os.environ.get("SYNAPSE_ACCESS_LOG", "0") == "1" else None
