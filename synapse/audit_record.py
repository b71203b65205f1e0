"""What the audit row of a /v1 request says, taken from the finished request context.

The audit layer knows nothing of the pipeline's context: the pipeline hands it these values.
"""

from __future__ import annotations

from audit.hashing import prompt_text
from audit.services import CallRecord, FindingRecord, RequestRecord

from .context import RequestContext


def request_record(ctx: RequestContext) -> RequestRecord:
    key, route = ctx.key, ctx.route
    return RequestRecord(
        request_id=ctx.request_id,
        occurred_at=ctx.received_at,
        endpoint=ctx.endpoint,
        model=_storable(ctx.model_requested),
        status=ctx.status,
        decision=ctx.decision,
        error_code=ctx.error_code or "",
        error_message=_storable(ctx.error_message),
        method=ctx.method,
        path=ctx.path,
        stream=ctx.stream,
        team_id=key.team_id if key else None,
        team_name=key.team_name if key else "",
        key_id=key.key_id if key else None,
        key_name=key.name if key else "",
        approved_by=key.approved_by if key else "",
        classification=key.classification if key else "",
        backend=route.backend.name if route else "",
        dlp=tuple(
            FindingRecord(direction=f.direction, category=f.category, pattern=f.pattern, action=f.action, count=f.count)
            for f in ctx.dlp_findings
        ),
        attempts=tuple(
            CallRecord(backend=a.backend, outcome=a.outcome, latency_ms=a.latency_ms, status=a.status) for a in ctx.attempts
        ),
        prompt_tokens=ctx.prompt_tokens,
        completion_tokens=ctx.completion_tokens,
        cost=ctx.cost,
        latency_ms=ctx.elapsed_ms(),
        upstream_latency_ms=ctx.upstream_ms,
        client_ip=ctx.client_ip,
        user_agent=ctx.user_agent,
        prompt=prompt_text(ctx.body),
        response="".join(ctx.response_text),
        stream_opened_seq=ctx.stream_opened_seq,
    )


def _storable(text: str) -> str:
    # Caller-chosen text (a model name, a tool name quoted in a refusal) may hold a NUL, which
    # PostgreSQL's text cannot store: the row must still be written, so it is shown, not kept.
    return text.replace("\x00", "\\x00")
