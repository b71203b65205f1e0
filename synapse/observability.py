"""What an operator sees of each request: metrics, log line and trace attributes, at the audit write.

The pipeline wraps the audit write in `audit_observed(ctx)`: the write is timed (and counted if
it fails), and once the row exists the request is counted and logged — so the request counter
and the log agree with the audit table. Nothing here may fail a request whose row is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .metrics import audit_write_timer, observe_request
from .otel import annotate
from .request_log import log_request

if TYPE_CHECKING:
    from .context import RequestContext

logger = logging.getLogger("synapse.observability")


@contextmanager
def audit_observed(ctx: RequestContext) -> Iterator[None]:
    with audit_write_timer():
        yield
    try:
        observe_request(ctx)
        log_request(ctx)
        annotate(ctx)
    except Exception:
        logger.exception("metrics or log line failed for %s", ctx.request_id)
