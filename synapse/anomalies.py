"""The anomaly rules' view of a finished request: called once its audit row is durable.

Shared by the /v1 pipeline and the /mcp gateway, which both count audit rows. An evaluation
that fails is logged and never fails the request: its row is already written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from alerts.services import alerts_observe_request
from teams.limits import SpendLevel

from .context import RequestContext

logger = logging.getLogger("synapse.anomalies")


def anomalies_observe(ctx: RequestContext, *, spend: Iterable[SpendLevel] = (), tool_call: bool = False) -> None:
    try:
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
