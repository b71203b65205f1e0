"""Database hops run on the worker's long-lived threads: no OS thread per request (issue 16)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from django.utils import timezone

from audit.models import AuditEvent
from synapse import db
from synapse.context import RequestContext
from synapse.lean_asgi import ApiASGIHandler
from synapse.pipeline import _audit
from teams.services import IssuedKey

CHAT = {"model": "mock-small", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.django_db(transaction=True)
def test_fifty_requests_reuse_the_pool_threads(sensitive_key: IssuedKey, monkeypatch: pytest.MonkeyPatch) -> None:
    hop_threads: list[threading.Thread] = []
    released = db._released

    def recording(fn: Callable[..., Any]) -> Callable[..., Any]:
        inner = released(fn)

        def run(*args: Any, **kwargs: Any) -> Any:
            hop_threads.append(threading.current_thread())
            return inner(*args, **kwargs)

        return run

    monkeypatch.setattr(db, "_released", recording)
    started: list[str] = []
    start = threading.Thread.start

    def counted_start(self: threading.Thread) -> None:
        started.append(self.name)
        start(self)

    async def fifty() -> list[int]:
        transport = httpx.ASGITransport(app=ApiASGIHandler())  # type: ignore[arg-type]  # Django types the scope dict, httpx MutableMapping
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            headers = {"authorization": f"Bearer {sensitive_key.plaintext}"}
            await client.post("/v1/chat/completions", json=CHAT, headers=headers)  # the pool's first thread starts here
            monkeypatch.setattr(threading.Thread, "start", counted_start)
            return [(await client.post("/v1/chat/completions", json=CHAT, headers=headers)).status_code for _ in range(50)]

    # asyncio.run, not async_to_sync: a sync caller's thread would take the hops itself.
    statuses = asyncio.run(fifty())
    assert statuses == [200] * 50
    assert AuditEvent.objects.filter(event_type="request").count() == 51
    # One hop a request (key + route + holds): on the event loop's own thread on PostgreSQL
    # (synapse/loop_db.py; the pool's first connection is made on a database thread), else on
    # the pool's threads; the anomaly evaluations in batches on their own thread.
    loop_thread = threading.current_thread()
    request_hops = [t for t in hop_threads if t.name != "synapse-anomalies"]
    if db.on_loop():
        assert sum(t is loop_thread for t in request_hops) >= 50
    else:
        assert len([t for t in request_hops if t.name.startswith("synapse-db")]) >= 50
    assert {t.name.split("_")[0] for t in request_hops} <= {"synapse-db", loop_thread.name}
    assert len({t.ident for t in request_hops}) <= db.db_threads() + 1
    # The pool may still grow towards its size (a hop can be submitted before the last one's
    # thread counts itself idle); it never starts a thread per request.
    assert len(started) <= db.db_threads() < 50
    assert all(name.startswith("synapse-db") for name in started)


@pytest.mark.django_db(transaction=True)
def test_a_second_audit_call_for_one_request_waits_for_the_first_and_writes_nothing() -> None:
    def context(n: int) -> RequestContext:
        return RequestContext(
            request_id=f"req_twice_{n}", endpoint="chat.completions", method="POST", path="/v1/chat/completions",
            client_ip="127.0.0.1", user_agent="t", received_at=timezone.now(),
        )  # fmt: skip

    contexts = [context(n) for n in range(5)]

    async def twice(ctx: RequestContext) -> None:
        # The pipeline's disconnect path: the first write still running, a second call arrives.
        assert list(await asyncio.gather(_audit(ctx), _audit(ctx, disconnected=True))) == [True, True]

    async def all_twice() -> None:
        for ctx in contexts:
            await twice(ctx)

    asyncio.run(all_twice())
    for ctx in contexts:
        assert ctx.audited
        assert AuditEvent.objects.filter(request_id=ctx.request_id).count() == 1


def test_hops_queued_together_each_get_a_thread_up_to_the_bound_and_reuse_them() -> None:
    pool = db.DbThreads(4)
    gate = threading.Barrier(4, timeout=10)  # passes only if 4 hops run at the same time

    async def bursts() -> list[list[int]]:
        loop = asyncio.get_running_loop()
        results = []
        for _ in range(3):
            results.append(await asyncio.gather(*[pool.submit(loop, gate.wait) for _ in range(4)]))
        return results

    assert [sorted(burst) for burst in asyncio.run(bursts())] == [[0, 1, 2, 3]] * 3
    assert pool._started == 4  # reused by the second and third bursts


def test_a_hop_raises_in_its_caller_and_a_cancelled_hop_leaves_its_thread_serving() -> None:
    pool = db.DbThreads(1)
    release = threading.Event()

    def fails() -> None:
        raise ValueError("in the hop")

    async def run() -> str:
        loop = asyncio.get_running_loop()
        with pytest.raises(ValueError, match="in the hop"):
            await pool.submit(loop, fails)
        waiting = pool.submit(loop, release.wait)
        waiting.cancel()  # its caller went away; the thread still runs it, then serves the next
        release.set()
        return await pool.submit(loop, lambda: "next")

    assert asyncio.run(run()) == "next"
