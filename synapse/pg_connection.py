"""The pool's connection class, which a database hop on the event loop (synapse/loop_db.py) needs.

Kept apart from that module: the settings name it, before Django is set up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import greenlet
import psycopg
from psycopg import waiting


class Hop(greenlet.greenlet):
    """One hop's greenlet and the Django connections it owns while it runs."""

    def __init__(self, run: Callable[[], Any], connections: dict[str, Any]) -> None:
        super().__init__(run)
        self.connections = connections


class BridgedConnection(psycopg.Connection[Any]):
    """psycopg's connection, whose waits inside a hop are awaited by the loop, not blocked on.

    Everywhere else (the audit writer, the anomaly thread, database threads, management
    commands) it is psycopg's connection unchanged."""

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        hop = greenlet.getcurrent()
        if not isinstance(hop, Hop):
            return super().wait(gen, interval=interval, timeout=timeout)
        parent = hop.parent
        assert parent is not None  # the loop's greenlet, which drives the hop (synapse/loop_db.py)
        return parent.switch(waiting.wait_async(gen, self.pgconn.socket, interval=interval, timeout=timeout))
