"""The gunicorn worker: uvicorn's, cutting leftover requests just before gunicorn's kill, and
closing connections whose request headers do not arrive in time.

gunicorn kills a worker `graceful_timeout` seconds after SIGTERM. uvicorn on its own would wait
for open connections until then and die mid-stream, leaving no audit row; told to stop waiting
a few seconds earlier (`timeout_graceful_shutdown`), it cancels the requests still running and
synapse/shutdown.py turns each cancel into an audited, explained cut.

uvicorn's httptools protocol, with a deadline on each request's head (synapse/http_protocol.py,
`SYNAPSE_HEADER_READ_TIMEOUT`): slow-trickle connections are closed instead of held for ever.
"""

from __future__ import annotations

import os
from typing import Any

from uvicorn_worker import UvicornWorker

from synapse.http_protocol import head_deadline_protocol
from synapse.shutdown import cut_after


class SynapseWorker(UvicornWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.timeout_graceful_shutdown = cut_after(float(self.cfg.graceful_timeout))
        # Read here, in the worker, not at import: the master imports this module too.
        self.config.http = head_deadline_protocol(float(os.environ.get("SYNAPSE_HEADER_READ_TIMEOUT", "10")))
