"""The anomaly rules' view of a finished request: called once its audit row is durable.

Shared by the /v1 pipeline and the /mcp gateway, which both count audit rows. An evaluation
that fails is logged and never fails the request: its row is already written.

The /v1 pipeline queues the evaluation (`anomalies_submit`) on one thread per worker, so the
rules' reads and counter writes are off the response path; the thread takes what gathered
in SYNAPSE_ANOMALY_BATCH_DELAY seconds and evaluates it in one transaction. Nothing is lost by
that: the rules count audit rows, which are committed before the evaluation is queued, so an
evaluation that a dying worker never ran is made up by the key's next one (the window still
holds the rows).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

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
            _observe(ctx, spend=spend, tool_call=tool_call)
    except Exception:
        logger.exception("anomaly evaluation failed for %s", ctx.request_id)


def _observe(ctx: RequestContext, *, spend: Iterable[SpendLevel], tool_call: bool) -> None:
    alerts_observe_request(
        key=ctx.key,
        decision=ctx.decision,
        client_ip=ctx.client_ip,
        at=ctx.received_at,
        tokens=(ctx.prompt_tokens or 0) + (ctx.completion_tokens or 0),
        spend=spend,
        tool_call=tool_call,
    )


# How long the anomaly thread lets evaluations gather once one is queued: a batch is one
# transaction and one thread wake-up for every request that finished meanwhile, instead of one
# each (measured: a wake-up, a transaction and its commit per request took a fifth of a loaded
# worker's throughput). Alerts are minutes-scale; 50 ms later costs them nothing.
BATCH_DELAY = float(os.environ.get("SYNAPSE_ANOMALY_BATCH_DELAY", "0.05"))


@dataclass(frozen=True, slots=True)
class _Pending:
    ctx: RequestContext
    spend: list[SpendLevel]
    tool_call: bool


class _Evaluations:
    """The worker's anomaly thread and its queue; the thread starts on first use, again after a fork."""

    def __init__(self) -> None:
        self._queue: deque[_Pending] = deque()
        self._ready = threading.Condition()
        self._pid = 0

    def submit(self, pending: _Pending) -> None:
        with self._ready:
            if self._pid != os.getpid():  # first use, or inherited across a fork: the parent's thread is not here
                self._pid = os.getpid()
                self._queue.clear()
                threading.Thread(target=self._run, name="synapse-anomalies", daemon=True).start()
            self._queue.append(pending)
            if len(self._queue) == 1:
                self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
            time.sleep(BATCH_DELAY)
            with self._ready:
                batch = list(self._queue)
                self._queue.clear()
            try:
                released(_observe_batch)(batch)
            except Exception:  # the thread must outlive a failure (the connection's return, say)
                logger.exception("anomaly evaluations of %d requests failed", len(batch))


def _observe_batch(batch: list[_Pending]) -> None:
    """The batch's evaluations in the order their rows committed, in one transaction. No
    savepoint each (two round trips a request): if one fails, the batch is rolled back whole
    and each evaluation done again in its own transaction, so only the failing one is lost."""
    try:
        with transaction.atomic():
            for pending in batch:
                _observe(pending.ctx, spend=pending.spend, tool_call=pending.tool_call)
    except Exception:
        if len(batch) == 1:
            logger.exception("anomaly evaluation failed for %s", batch[0].ctx.request_id)
            return
        logger.warning("anomaly evaluations of %d requests failed together; evaluating each alone", len(batch))
        for pending in batch:
            anomalies_observe(pending.ctx, spend=pending.spend, tool_call=pending.tool_call)


_evaluations = _Evaluations()


def anomalies_submit(ctx: RequestContext, *, spend: Iterable[SpendLevel] = (), tool_call: bool = False) -> None:
    """Queue the evaluation on this worker's anomaly thread (one thread: evaluations of one
    worker run in the order their rows committed)."""
    _evaluations.submit(_Pending(ctx, list(spend), tool_call))
