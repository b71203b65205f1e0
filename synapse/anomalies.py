"""The anomaly rules' view of a finished request: called once its audit row is durable.

Shared by the /v1 pipeline and the /mcp gateway, which both count audit rows. An evaluation
that fails is logged and never fails the request: its row is already written.

The /v1 pipeline queues the evaluation (`anomalies_submit`) on one thread per worker, so the
rules' reads and counter writes are off the response path. Nothing is lost by that: the rules
count audit rows, which are committed before the evaluation is queued, so an evaluation that
a dying worker never ran is made up by the key's next one (the window still holds the rows).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from django.db import transaction

from alerts.services import alerts_observe_request
from teams.limits import SpendLevel

from .context import RequestContext
from .db import released

logger = logging.getLogger("synapse.anomalies")


def anomalies_observe(ctx: RequestContext, *, spend: Iterable[SpendLevel] = (), tool_call: bool = False) -> None:
    try:
        # One transaction for the rules' reads and writes: one commit, not one per statement.
        with transaction.atomic():
            alerts_observe_request(
                key=ctx.key,
                decision=ctx.decision,
                client_ip=ctx.client_ip,
                at=ctx.received_at,
                tokens=(ctx.prompt_tokens or 0) + (ctx.completion_tokens or 0),
                spend=spend,
                tool_call=tool_call,
            )
    except Exception:
        logger.exception("anomaly evaluation failed for %s", ctx.request_id)


_executor: tuple[int, ThreadPoolExecutor] | None = None
_executor_lock = threading.Lock()


def anomalies_submit(ctx: RequestContext, *, spend: Iterable[SpendLevel] = (), tool_call: bool = False) -> None:
    """Queue the evaluation on this worker's anomaly thread (one thread: evaluations of one
    worker run in the order their rows committed)."""
    global _executor
    with _executor_lock:
        if _executor is None or _executor[0] != os.getpid():  # none yet, or inherited across a fork
            _executor = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="synapse-anomalies"))
        executor = _executor[1]
    executor.submit(released(anomalies_observe), ctx, spend=list(spend), tool_call=tool_call)
