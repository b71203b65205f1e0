"""Calendar arithmetic in a team's time zone: budget periods and business hours.

Pure functions (no database) so the per-request scope snapshot and the models share them.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ValidationError


def zone_named(name: str) -> ZoneInfo:
    """The team's zone; empty means the server's (SYNAPSE_TIME_ZONE)."""
    try:
        return ZoneInfo(name or settings.TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError({"time_zone": f"unknown time zone '{name}'"}) from exc


def period_bounds(*, period: str, zone: ZoneInfo, at: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the calendar-aligned budget period holding `at`, in `zone`."""
    local = at.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start = midnight
        end = _local_midnight(zone, (midnight + timedelta(days=1)).date())
    elif period == "week":
        start = _local_midnight(zone, (midnight - timedelta(days=midnight.weekday())).date())
        end = _local_midnight(zone, (start + timedelta(days=7)).date())
    else:
        start = midnight.replace(day=1)
        first_next = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
        end = _local_midnight(zone, first_next.date())
    return _local_midnight(zone, start.date()), end


def _local_midnight(zone: ZoneInfo, day: date) -> datetime:
    # Rebuilt from the date so a DST change inside the period does not shift the boundary.
    return datetime.combine(day, time(0), tzinfo=zone)


def is_business_time(at: datetime, *, zone: ZoneInfo, start: time, end: time, days: str) -> bool:
    local = at.astimezone(zone)
    if str(local.isoweekday()) not in days:
        return False
    now = local.time()
    if start <= end:
        return start <= now < end
    return now >= start or now < end  # a night shift spanning midnight


def off_hours_started(at: datetime, *, zone: ZoneInfo, start: time, end: time, days: str, horizon_hours: int = 96) -> datetime:
    """When the off-hours stretch holding `at` began (at most `horizon_hours` back)."""
    step = timedelta(minutes=15)
    moment = at
    floor = at - timedelta(hours=horizon_hours)
    # Quarter-hour steps are exact for business hours on quarter-hour boundaries (all real ones).
    while moment > floor:
        previous = moment - step
        if is_business_time(previous, zone=zone, start=start, end=end, days=days):
            local = previous.astimezone(zone)
            return datetime.combine(local.date(), end, tzinfo=zone) if end > local.time() else moment
        moment = previous
    return floor
