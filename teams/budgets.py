"""Spend: what a team or key has spent in a budget period, from the audit log (the record).

The counter store holds the running figure the gateway checks on every request; the audit
log's `cost` column is the record it is re-seeded from when missing (first request of a
period, a flushed Redis, a crashed UNLOGGED table). Money is counted in integer nano-dollars
so counters stay integers and nothing is lost to rounding (1 token at $0.15 / Mtok is 150
nano-dollars).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Sum

from audit.models import AuditEvent, EventType

NANO = Decimal(1_000_000_000)


def to_nano(amount: Decimal) -> int:
    """Dollars to nano-dollars, rounded up (a reservation must never be short)."""
    return math.ceil(amount * NANO)


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """One budget that applies to a request: the key's or the team's, for one period."""

    kind: str  # "key" | "team"
    object_id: int
    name: str
    team_id: int
    budget: Decimal
    start: datetime
    end: datetime

    @property
    def counter_key(self) -> str:
        return f"spend:{self.kind}:{self.object_id}:{self.start:%Y%m%d}"

    @property
    def limit_nano(self) -> int:
        return to_nano(self.budget)


def spent_in_period(*, kind: str, object_id: int, start: datetime, end: datetime) -> Decimal:
    """Recorded spend (audit rows) of a team or key in [start, end)."""
    rows = AuditEvent.objects.filter(event_type=EventType.REQUEST, occurred_at__gte=start, occurred_at__lt=end)
    rows = rows.filter(team_id=object_id) if kind == "team" else rows.filter(key_id=object_id)
    return rows.aggregate(total=Sum("cost"))["total"] or Decimal(0)
