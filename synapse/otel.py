"""OpenTelemetry traces, exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

One SERVER span per /v1 request (synapse/tracing.py starts it, continuing a client's
`traceparent`), with child spans for the request's two database hops — `synapse.scope` (key,
route, DLP prompt scan, limit holds) and `synapse.audit` (the wait for the group commit of the
audit row with its settlement) — and one event per upstream attempt. Attributes follow the HTTP and GenAI semantic
conventions (model, token usage); they never carry prompt or answer text, nor a key.

Unset, nothing is exported and the API's no-op tracer costs next to nothing. The standard
OTEL_* variables (service name, headers, sampler, batch delays) are read by the SDK itself.
Configured lazily, once per worker process: the exporter's thread must start after the fork.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from .context import RequestContext

logger = logging.getLogger("synapse.otel")

# The request's SERVER span, so the audit hop (on a worker thread) can annotate it.
request_span: contextvars.ContextVar[trace.Span | None] = contextvars.ContextVar("synapse_request_span", default=None)

# The pipeline's database hops (synapse.db.run_db) that get a span of their own, by function.
STAGE_SPANS = {"_load_scope": "synapse.scope", "_write_row": "synapse.audit"}

_lock = threading.Lock()
_configured_pid: int | None = None
_enabled = False


def enabled() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) and (
        os.environ.get("OTEL_SDK_DISABLED", "").lower() != "true"
    )


def _configure() -> None:
    global _configured_pid, _enabled
    with _lock:
        if _configured_pid == os.getpid():
            return
        _configured_pid = os.getpid()
        if not enabled():
            return
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "synapse"}
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _enabled = True


def tracer() -> trace.Tracer:
    if _configured_pid != os.getpid():
        _configure()
    return trace.get_tracer("synapse")


def recording() -> bool:
    if _configured_pid != os.getpid():
        _configure()
    return _enabled


def parent_context(traceparent: str | None) -> Context | None:
    """The client's span as the parent (None: a new trace)."""
    if not traceparent:
        return None
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def traceparent_of(span: trace.Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


@contextmanager
def stage_span(function_name: str) -> Iterator[None]:
    """A child span around one of the pipeline's database hops (none for other calls)."""
    name = STAGE_SPANS.get(function_name)
    if name is None or not recording():
        yield
        return
    with tracer().start_as_current_span(name):
        yield


_OPERATIONS = {"chat.completions": "chat", "embeddings": "embeddings"}


def annotate(ctx: RequestContext) -> None:
    """What the request became, on its SERVER span (called once its audit row exists)."""
    span = request_span.get()
    if span is None or not span.is_recording():
        return
    attributes: dict[str, Any] = {
        "http.response.status_code": ctx.status,
        "synapse.request_id": ctx.request_id,
        "synapse.endpoint": ctx.endpoint,
        "synapse.decision": ctx.decision,
        "synapse.stream": ctx.stream,
        "synapse.dlp.findings": sum(f.count for f in ctx.dlp_findings),
    }
    if ctx.error_code:
        attributes["error.type"] = ctx.error_code
    if ctx.key is not None:
        attributes["synapse.team"] = ctx.key.team_name
    if operation := _OPERATIONS.get(ctx.endpoint):
        attributes["gen_ai.operation.name"] = operation
    if ctx.model_requested:
        attributes["gen_ai.request.model"] = ctx.model_requested
    if ctx.route is not None:
        attributes["gen_ai.response.model"] = ctx.route.upstream_model
        attributes["gen_ai.provider.name"] = ctx.route.backend.kind
        attributes["synapse.backend"] = ctx.route.backend.name
    if ctx.prompt_tokens is not None:
        attributes["gen_ai.usage.input_tokens"] = ctx.prompt_tokens
    if ctx.completion_tokens is not None:
        attributes["gen_ai.usage.output_tokens"] = ctx.completion_tokens
    span.set_attributes(attributes)
    for attempt in ctx.attempts:
        event: dict[str, str | float] = {
            "synapse.backend": attempt.backend,
            "synapse.outcome": attempt.outcome,
            "synapse.latency_ms": attempt.latency_ms,
        }
        if attempt.status is not None:
            event["http.response.status_code"] = attempt.status
        span.add_event("upstream.attempt", event)
    if ctx.status >= 500:
        span.set_status(trace.StatusCode.ERROR, ctx.error_code or "")
