"""The typed request context: created by the view, filled by each layer in order, audited last.

It flows one way. Layers receive the parts they need (a key scope, a message list) and the
pipeline writes their decisions back here; the audit layer records the finished context.
Plain prompt and response text live here only for the life of the request (the audit layer
stores keyed hashes of them, never the text).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from audit.models import Decision
from dlp.engine import Action, Direction

from .errors import GatewayError

if TYPE_CHECKING:
    from dlp.inspection import Inspector, Verdict
    from routing.selectors import Route
    from teams.limits import Reservation
    from teams.selectors import KeyScope


@dataclass(slots=True)
class Attempt:
    """One call to one backend (failover can make several per request)."""

    backend: str
    outcome: str  # "ok" or an error code
    latency_ms: float
    status: int | None = None
    health: str | None = None  # what the circuit breaker learns from it: "failure" / "recovered"


# A /v1 finding is in the PROMPT or the RESPONSE; an /mcp one in a tool call's arguments or result.
McpDirection = Literal["arguments", "result"]


@dataclass(slots=True)
class DlpFinding:
    """What a DLP rule did; never the matched value."""

    direction: Direction | McpDirection
    category: str
    pattern: str
    action: Action
    count: int = 1


@dataclass(slots=True)
class RequestContext:
    request_id: str
    endpoint: str  # "chat.completions" | "embeddings" | "models" | "unknown"
    method: str
    path: str
    client_ip: str
    user_agent: str
    received_at: datetime
    started: float = field(default_factory=time.perf_counter)

    key: KeyScope | None = None
    route: Route | None = None
    dlp: Inspector | None = None  # the team's DLP policy in the key's mode; set with the key
    prompt_scan: tuple[Any, Verdict] | None = None  # the rewritten prompt and what DLP found in it
    prompt_unscanned: GatewayError | None = None  # the prompt was over DLP's size or time bound
    scan_deferred: bool = False  # a large prompt: scanned on the scan pool, not in the first hop
    model_requested: str = ""
    callable_tools: frozenset[str] | None = None  # what the answer may call; None: the key has no tool policy
    stream: bool = False
    include_usage: bool = False

    body: dict[str, Any] = field(default_factory=dict)  # the client's request, as parsed
    upstream_body: dict[str, Any] | None = None  # what the backend was sent

    decision: Decision = Decision.ALLOWED
    status: int = 200
    error_code: str | None = None
    error_message: str = ""

    dlp_findings: list[DlpFinding] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: Decimal | None = None
    upstream_ms: float | None = None
    response_text: list[str] = field(default_factory=list)
    reservation: Reservation | None = None  # rate / token / budget holds, settled before the audit row
    monitored: list[GatewayError] = field(default_factory=list)  # refusals monitor mode let through
    audited: bool = False  # the request's one audit row is written; set by the pipeline only
    stream_opened_seq: int | None = None  # a stream's opening row is written (its seq); pipeline only
    database_unreachable: bool = False  # the first hop could not connect: the audit write is not tried
    # The write of the request's row, once started: a second call (the client went away while
    # the row was being written) waits for it instead of writing another.
    audit_write: asyncio.Future[None] | None = field(default=None, repr=False, compare=False)
    stream_open_write: asyncio.Future[None] | None = field(default=None, repr=False, compare=False)  # its opening row

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def scope_restart(self, body: dict[str, Any]) -> None:
        """Undo what the first hop did on a kept scope that turned out stale (pipeline._load_scope):
        it is done again on the key read afresh. Nothing was held; `body` is the request as it
        was before DLP rewrote it."""
        self.body = body
        self.dlp = None
        self.prompt_scan = None
        self.prompt_unscanned = None
        self.scan_deferred = False
        self.reservation = None

    def reject(self, *, decision: Decision, status: int, code: str | None, message: str) -> None:
        self.decision = decision
        self.status = status
        self.error_code = code
        self.error_message = message

    def enforce(self, refusal: GatewayError) -> None:
        """Raise `refusal` — unless the key is in monitor mode: then record it and carry on.

        Every layer that would refuse a request (limits, DLP blocks) goes through here, so one
        switch on the key turns all of them into evidence. A monitored request's audit row has
        decision `monitor_<what enforce mode would have decided>` (e.g. `monitor_blocked_dlp`),
        its real status, the refusal's code, and the refusal's message in its detail.
        """
        if self.key is None or not self.key.is_monitor:
            raise refusal
        self.monitored.append(refusal)
        if not self.decision.is_monitored:
            self.decision = refusal.decision.monitored
            self.error_code = refusal.code
        self.error_message = " | ".join(
            f"monitor mode: would have refused with {r.status} {r.code}: {r.message}" for r in self.monitored
        )
