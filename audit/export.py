"""The audit export's line format, shared by `export_audit` (stdout) and the console's download.

JSON lines: one object per row. CSV: a header row, then one row per event; the JSON columns
(dlp, attempts, detail) are JSON text in their cell and date-times are ISO 8601.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from .selectors import EXPORT_FIELDS

JSON_COLUMNS = {"dlp", "attempts", "detail"}
FORMATS = ("jsonl", "csv")


def export_chunks(rows: Iterable[dict[str, Any]], *, fmt: str, batch: int = 1000) -> Iterator[str]:
    """Text chunks of the export, about `batch` rows each, so a streamed response stays small."""
    if fmt == "jsonl":
        lines: list[str] = []
        for row in rows:
            lines.append(json.dumps(row, cls=DjangoJSONEncoder, ensure_ascii=False) + "\n")
            if len(lines) >= batch:
                yield "".join(lines)
                lines.clear()
        if lines:
            yield "".join(lines)
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
        if index % batch == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
