from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit.selectors import EXPORT_FIELDS, audit_event_list

JSON_COLUMNS = {"dlp", "attempts", "detail"}


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
        if options["format"] == "jsonl":
            for row in rows:
                self.stdout.write(json.dumps(row, cls=DjangoJSONEncoder, ensure_ascii=False))
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_FIELDS)
        for index, row in enumerate(rows, start=1):
            writer.writerow(
                [
                    json.dumps(row[name], ensure_ascii=False)
                    if name in JSON_COLUMNS
                    else (row[name].isoformat() if isinstance(row[name], datetime) else row[name])
                    for name in EXPORT_FIELDS
                ]
            )
            if index % 1000 == 0:
                self.stdout.write(buffer.getvalue(), ending="")
                buffer.seek(0)
                buffer.truncate()
        self.stdout.write(buffer.getvalue(), ending="")
