from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit.export import export_chunks
from audit.selectors import audit_event_list


def _moment(value: str | None, option: str) -> datetime | None:
    if not value:
        return None
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"{option}: '{value}' is not an ISO date or date-time")
        moment = datetime.combine(day, time.min)
    # A bare date or time is read as UTC, so an export is the same whoever runs it.
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Stream audit events to stdout for SIEM ingestion, in chain order, as JSON lines or CSV."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="Only events at or after this ISO date or date-time (UTC unless an offset is given).")
        parser.add_argument("--until", help="Only events before this ISO date or date-time (UTC unless an offset is given).")
        parser.add_argument(
            "--format",
            choices=["jsonl", "csv"],
            default="jsonl",
            help="jsonl (default): one JSON object per line; csv: a header row, then one row per event.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        rows = audit_event_list(since=_moment(options["since"], "--since"), until=_moment(options["until"], "--until"))
        for chunk in export_chunks(rows, fmt=options["format"]):
            self.stdout.write(chunk, ending="")
