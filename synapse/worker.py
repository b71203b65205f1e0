"""The gunicorn worker: uvicorn's, cutting leftover requests just before gunicorn's kill.

gunicorn kills a worker `graceful_timeout` seconds after SIGTERM. uvicorn on its own would wait
for open connections until then and die mid-stream, leaving no audit row; told to stop waiting
a few seconds earlier (`timeout_graceful_shutdown`), it cancels the requests still running and
synapse/shutdown.py turns each cancel into an audited, explained cut.
"""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker

from synapse.shutdown import cut_after


class SynapseWorker(UvicornWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.timeout_graceful_shutdown = cut_after(float(self.cfg.graceful_timeout))
