"""The worker's anomaly thread evaluates what gathered in one transaction, in submission order;
a failing evaluation costs only itself."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.utils import timezone

from synapse import anomalies
from synapse.context import RequestContext


def _ctx(n: int) -> RequestContext:
    return RequestContext(
        request_id=f"req_batch_{n}", endpoint="chat.completions", method="POST", path="/v1/chat/completions",
        client_ip="127.0.0.1", user_agent="t", received_at=timezone.now(),
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_evaluations_gather_into_one_batch_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, bool]] = []
    done = threading.Event()

    def observe(**kwargs: Any) -> None:
        from django.db import connection

        seen.append((kwargs["client_ip"], connection.in_atomic_block))
        if len(seen) == 5:
            done.set()

    monkeypatch.setattr(anomalies, "alerts_observe_request", observe)
    batches: list[int] = []
    batch = anomalies._observe_batch

    def counted(pending: list[anomalies._Pending]) -> None:
        batches.append(len(pending))
        batch(pending)

    monkeypatch.setattr(anomalies, "_observe_batch", counted)
    monkeypatch.setattr(anomalies, "BATCH_DELAY", 0.2)
    evaluations = anomalies._Evaluations()
    for n in range(5):
        ctx = _ctx(n)
        ctx.client_ip = f"10.0.0.{n}"
        evaluations.submit(anomalies._Pending(ctx, [], False))
    assert done.wait(10)
    assert [ip for ip, _ in seen] == [f"10.0.0.{n}" for n in range(5)]
    assert all(in_transaction for _, in_transaction in seen)
    assert batches == [5]


@pytest.mark.django_db(transaction=True)
def test_a_failing_evaluation_is_retried_alone_and_spares_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def observe(**kwargs: Any) -> None:
        calls.append(kwargs["client_ip"])
        if kwargs["client_ip"] == "bad":
            raise RuntimeError("rule failed")

    monkeypatch.setattr(anomalies, "alerts_observe_request", observe)
    pending = []
    for n, ip in enumerate(["a", "bad", "c"]):
        ctx = _ctx(n)
        ctx.client_ip = ip
        pending.append(anomalies._Pending(ctx, [], False))
    anomalies._observe_batch(pending)
    # Together first (rolled back at the failure), then each in its own transaction.
    assert calls == ["a", "bad", "a", "bad", "c"]
