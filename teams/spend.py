"""Reads for the console's spend pages and dashboard, all from the audit log (the record)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from audit.models import AuditEvent, Decision, EventType

from .models import ApiKey, Team
from .periods import period_bounds


@dataclass(frozen=True, slots=True)
class SpendLine:
    name: str
    object_id: int
    spent: Decimal
    requests: int  # served (allowed, or let through in monitor mode): usage
    budget: Decimal | None
    refused: int = 0  # refused or failed: recorded, but not usage
    revoked: bool = False

    @property
    def percent(self) -> float | None:
        return float(self.spent / self.budget * 100) if self.budget else None


@dataclass(frozen=True, slots=True)
class PeriodSpend:
    start: datetime
    end: datetime
    total: SpendLine
    keys: list[SpendLine]


def team_period_spend(*, team: Team, at: datetime | None = None) -> PeriodSpend:
    """The team's spend this budget period, and each of its keys'."""
    start, end = period_bounds(period=team.budget_period, zone=team.zone(), at=at or timezone.now())
    rows = AuditEvent.objects.filter(event_type=EventType.REQUEST, team_id=team.pk, occurred_at__gte=start, occurred_at__lt=end)
    served = Q(decision=Decision.ALLOWED) | Q(decision__startswith="monitor_")
    per_key = (
        rows.values("key_id")
        .annotate(spent=Sum("cost"), requests=Count("id", filter=served), refused=Count("id", filter=~served))
        .order_by()
    )
    by_key: dict[int | None, Mapping[str, Any]] = {row["key_id"]: row for row in per_key}
    none: dict[str, Any] = {}
    keys = [
        SpendLine(
            name=key.name,
            object_id=key.pk,
            spent=(by_key.get(key.pk) or none).get("spent") or Decimal(0),
            requests=(by_key.get(key.pk) or none).get("requests") or 0,
            budget=key.budget,
            refused=(by_key.get(key.pk) or none).get("refused") or 0,
            revoked=key.revoked_at is not None,
        )
        for key in ApiKey.objects.filter(team=team).order_by("name")
    ]
    total = SpendLine(
        name=str(team),
        object_id=team.pk,
        spent=sum((line.spent for line in keys), Decimal(0)),
        requests=sum(line.requests for line in keys),
        budget=team.budget,
        refused=sum(line.refused for line in keys),
    )
    return PeriodSpend(start=start, end=end, total=total, keys=sorted(keys, key=lambda line: line.spent, reverse=True))


def daily_spend(
    *, zone: ZoneInfo, days: int = 30, team_id: int | None = None, key_id: int | None = None
) -> list[tuple[date, Decimal]]:
    """Spend per local day for the last `days` days (oldest first, empty days included)."""
    today = timezone.now().astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    rows = AuditEvent.objects.filter(
        event_type=EventType.REQUEST, occurred_at__gte=datetime.combine(first, datetime.min.time(), tzinfo=zone)
    )
    if team_id is not None:
        rows = rows.filter(team_id=team_id)
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    found = {
        row["day"]: row["spent"] or Decimal(0)
        for row in rows.annotate(day=TruncDate("occurred_at", tzinfo=zone)).values("day").annotate(spent=Sum("cost")).order_by()
    }
    return [(first + timedelta(days=i), found.get(first + timedelta(days=i), Decimal(0))) for i in range(days)]


@dataclass(frozen=True, slots=True)
class DayActivity:
    day: date
    requests: int
    blocked: int
    monitored: int
    spend: Decimal


def daily_activity(*, zone: ZoneInfo, days: int = 14) -> list[DayActivity]:
    """Requests, refusals (any `blocked_*`), monitor-mode would-be refusals and spend per day."""
    today = timezone.now().astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    rows = (
        AuditEvent.objects.filter(
            event_type=EventType.REQUEST, occurred_at__gte=datetime.combine(first, datetime.min.time(), tzinfo=zone)
        )
        .annotate(day=TruncDate("occurred_at", tzinfo=zone))
        .values("day")
        .annotate(
            requests=Count("id"),
            blocked=Count("id", filter=Q(decision__startswith="blocked_")),
            monitored=Count("id", filter=Q(decision__startswith="monitor_")),
            spend=Sum("cost"),
        )
        .order_by()
    )
    found: dict[date, Mapping[str, Any]] = {row["day"]: row for row in rows}
    result = []
    for i in range(days):
        day = first + timedelta(days=i)
        row = found.get(day) or {}
        result.append(
            DayActivity(
                day=day,
                requests=row.get("requests") or 0,
                blocked=row.get("blocked") or 0,
                monitored=row.get("monitored") or 0,
                spend=row.get("spend") or Decimal(0),
            )
        )
    return result


@dataclass(frozen=True, slots=True)
class ModelSpend:
    key_id: int | None
    key_name: str
    model: str
    requests: int  # served
    refused: int
    prompt_tokens: int
    completion_tokens: int
    spent: Decimal


def spend_by_model(*, start: datetime, end: datetime, team_id: int | None = None, key_id: int | None = None) -> list[ModelSpend]:
    """Per key and model, requests served and refused, tokens and cost in [start, end)."""
    rows = AuditEvent.objects.filter(event_type=EventType.REQUEST, occurred_at__gte=start, occurred_at__lt=end)
    if team_id is not None:
        rows = rows.filter(team_id=team_id)
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    served = Q(decision=Decision.ALLOWED) | Q(decision__startswith="monitor_")
    grouped = (
        rows.values("key_id", "key_name", "model")
        .annotate(
            requests=Count("id", filter=served),
            refused=Count("id", filter=~served),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            spent=Sum("cost"),
        )
        .order_by("key_name", "model")
    )
    return [
        ModelSpend(
            key_id=row["key_id"],
            key_name=row["key_name"],
            model=row["model"] or "—",
            requests=row["requests"],
            refused=row["refused"],
            prompt_tokens=row["prompt"] or 0,
            completion_tokens=row["completion"] or 0,
            spent=row["spent"] or Decimal(0),
        )
        for row in grouped
    ]
