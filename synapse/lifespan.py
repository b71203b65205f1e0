"""Each worker's start-up and background work: drain the alert webhook outbox (`alerts/`),
load the tokenizers and keep the in-flight slots of running requests leased (`teams/`). It
lives in the project, not in either app, because it is the one place that starts work for
several layers.

`with_background_tasks` wraps the ASGI application and answers the ASGI lifespan protocol,
which uvicorn sends to each worker at start and stop. Every worker drains; the outbox's
claim-by-lease makes that safe, and it keeps deliveries flowing while any worker lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger("synapse.background")

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def _drain_once() -> int:
    from alerts.webhooks import webhook_deliveries_drain

    close_old_connections()
    try:
        return webhook_deliveries_drain().sent
    finally:
        close_old_connections()


async def drain_forever() -> None:
    interval = settings.SYNAPSE["WEBHOOK_POLL_SECONDS"]
    while True:
        try:
            # Not thread-sensitive: a slow receiver must not hold the thread the requests' DB hops use.
            await sync_to_async(_drain_once, thread_sensitive=False)()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("webhook drain failed; retrying in %s s", interval)
        await asyncio.sleep(interval)


def _refresh_leases() -> int:
    from teams.concurrency import concurrency_leases_refresh

    close_old_connections()
    try:
        return concurrency_leases_refresh()
    finally:
        close_old_connections()


async def refresh_leases_forever() -> None:
    """Keep this worker's in-flight slots (teams/concurrency.py) leased while their requests run."""
    interval = settings.SYNAPSE["CONCURRENCY_LEASE_SECONDS"] / 3
    while True:
        await asyncio.sleep(interval)
        try:
            await sync_to_async(_refresh_leases, thread_sensitive=False)()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("refreshing the in-flight leases failed; retrying in %s s", interval)


def _warm_tokenizers() -> None:
    from teams.tokens import warm_up

    warm_up()


def with_background_tasks(app: App) -> App:
    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        tasks: list[asyncio.Task[Any]] = []
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                tasks.append(asyncio.create_task(drain_forever()))
                tasks.append(asyncio.create_task(refresh_leases_forever()))
                tasks.append(asyncio.create_task(sync_to_async(_warm_tokenizers, thread_sensitive=False)()))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                await send({"type": "lifespan.shutdown.complete"})
                return

    return application
