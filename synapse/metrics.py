"""Prometheus metrics: counted per worker, summed across gunicorn's workers at scrape time.

prometheus-client's multiprocess mode: each worker writes its samples to memory-mapped files in
PROMETHEUS_MULTIPROC_DIR (the gunicorn config gives every instance its own directory, cleans it
when the master starts and marks a worker's files dead when it exits); `/metrics` merges them.
Without that variable (tests, `manage.py runserver`) the process's own registry is served.

Labels are bounded and carry no secrets: endpoint, decision, status, backend, model, team, DLP
category. Never a key id, a request id, or any prompt text.

Two gauges are read from the database at scrape time instead (the circuit breaker's state and
the webhook outbox live there, shared by every worker and replica).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

if TYPE_CHECKING:
    from datetime import datetime

    from django.apps.registry import Apps
    from prometheus_client.metrics_core import Metric

    from .context import RequestContext

logger = logging.getLogger("synapse.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# LLM calls take seconds; the default buckets stop at 10 s.
_SLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REQUESTS = Counter("synapse_requests", "Requests served, one per audit row.", ["endpoint", "decision", "status"])
REQUEST_DURATION = Histogram(
    "synapse_request_duration_seconds", "Time from request to audit row.", ["endpoint"], buckets=_SLOW_BUCKETS
)
UPSTREAM_DURATION = Histogram(
    "synapse_upstream_duration_seconds", "One call to one backend (each failover try).", ["backend"], buckets=_SLOW_BUCKETS
)
TOKENS = Counter("synapse_tokens", "Tokens by direction (prompt/completion) and public model name.", ["direction", "model"])
COST = Counter("synapse_cost_usd", "Spend in USD at the routing table's prices.", ["team"])
DLP_FINDINGS = Counter("synapse_dlp_findings", "DLP rule matches.", ["direction", "category", "action"])
AUDIT_WRITE = Histogram(
    "synapse_audit_write_duration_seconds",
    "Settlement, audit row and breaker update: the write after the upstream call.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
AUDIT_FAILURES = Counter("synapse_audit_write_failures", "Audit writes that failed (the request was answered 503).")


def observe_request(ctx: RequestContext) -> None:
    """Count a request whose audit row has just been written."""
    endpoint = ctx.endpoint
    REQUESTS.labels(endpoint, ctx.decision, str(ctx.status)).inc()
    REQUEST_DURATION.labels(endpoint).observe(ctx.elapsed_ms() / 1000.0)
    for attempt in ctx.attempts:
        if not attempt.outcome.startswith("skipped_"):
            UPSTREAM_DURATION.labels(attempt.backend).observe(attempt.latency_ms / 1000.0)
    model = ctx.model_requested if ctx.route is not None else ""
    if ctx.prompt_tokens:
        TOKENS.labels("prompt", model).inc(ctx.prompt_tokens)
    if ctx.completion_tokens:
        TOKENS.labels("completion", model).inc(ctx.completion_tokens)
    if ctx.cost and ctx.key is not None:
        COST.labels(ctx.key.team_name).inc(float(ctx.cost))
    for finding in ctx.dlp_findings:
        DLP_FINDINGS.labels(finding.direction, finding.category, finding.action).inc(finding.count)


@contextmanager
def audit_write_timer() -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        AUDIT_FAILURES.inc()
        raise
    finally:
        AUDIT_WRITE.observe(time.perf_counter() - started)


class DatabaseGauges(Collector):
    """Gauges whose truth is in the database, read when scraped (sync: call from a thread)."""

    def collect(self) -> Iterator[Metric]:
        from django.apps import apps
        from django.db import connection
        from django.utils import timezone

        try:
            yield from self._gauges(timezone.now(), apps)
        except Exception:  # a database outage must not hide the workers' own metrics
            logger.exception("database gauges unavailable")
        finally:
            if not connection.in_atomic_block:
                connection.close()  # back to the pool: scrapes run on a thread of their own

    def _gauges(self, now: datetime, apps: Apps) -> Iterator[Metric]:
        circuit = GaugeMetricFamily(
            "synapse_backend_circuit_open", "1 while the backend's circuit breaker keeps it out.", labels=["backend"]
        )
        backend_model = apps.get_model("routing", "Backend")
        for name, open_until in backend_model.objects.values_list("name", "health__open_until"):
            circuit.add_metric([name], 1.0 if open_until is not None and open_until > now else 0.0)
        yield circuit
        delivery_model = apps.get_model("alerts", "WebhookDelivery")
        pending = delivery_model.objects.filter(status="pending").count()
        yield GaugeMetricFamily("synapse_webhook_outbox_pending", "Webhook deliveries not yet sent.", value=pending)


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def exposition() -> bytes:
    """The /metrics body: every worker's samples, then the database gauges."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    database = CollectorRegistry()
    database.register(DatabaseGauges())
    return generate_latest(registry) + generate_latest(database)
