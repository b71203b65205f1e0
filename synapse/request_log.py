"""The per-request log line: who, what was decided, how long it took — never text or a key."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from routing.trace import current_traceparent
from teams.models import KEY_PREFIX

from .logs import FIELDS_ATTR

if TYPE_CHECKING:
    from .context import RequestContext

logger = logging.getLogger("synapse.request")


def request_fields(ctx: RequestContext) -> dict[str, Any]:
    key = ctx.key
    traceparent = current_traceparent.get()
    served = [a for a in ctx.attempts if not a.outcome.startswith("skipped_")]
    return {
        "request_id": ctx.request_id,
        "trace_id": traceparent.split("-")[1] if traceparent else None,
        "method": ctx.method,
        "path": ctx.path,
        "endpoint": ctx.endpoint,
        "status": ctx.status,
        "decision": ctx.decision,
        "error_code": ctx.error_code,
        "duration_ms": round(ctx.elapsed_ms(), 1),
        # The key's public lookup id and prefix only; the secret never reaches a log.
        "key_id": key.key_id if key else None,
        "key_prefix": f"{KEY_PREFIX}_{key.lookup_id}_" if key else None,
        "team": key.team_name if key else None,
        "model": ctx.model_requested or None,
        "backend": ctx.route.backend.name if ctx.route else (served[-1].backend if served else None),
        "upstream_ms": round(ctx.upstream_ms, 1) if ctx.upstream_ms is not None else None,
        "attempts": len(served),
        "prompt_tokens": ctx.prompt_tokens,
        "completion_tokens": ctx.completion_tokens,
        "stream": ctx.stream,
        "client_ip": ctx.client_ip,
    }


def log_request(ctx: RequestContext) -> None:
    fields = request_fields(ctx)
    # Refusals the gateway answered itself are routine (INFO); failures it could not avoid warn.
    level = logging.WARNING if ctx.status >= 500 else logging.INFO
    logger.log(level, "%s %s %s %s", ctx.method, ctx.path, ctx.status, ctx.decision, extra={FIELDS_ATTR: fields})
