from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.hashing import hash_keys
from audit.selectors import audit_event_match


class Command(BaseCommand):
    help = (
        "Was this exact text sent (or answered), when, and by whom? Recomputes the keyed hash of the text under "
        "the current and retired AUDIT_HASH keys and lists the matching requests. The prompt hashed is the last "
        "user message of a chat request (text parts joined by newlines) or the embeddings input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--text", help="The exact text to look for.")
        source.add_argument("--file", metavar="FILE", help="Read the exact text from this UTF-8 file.")
        parser.add_argument("--strip", action="store_true", help="Strip leading and trailing whitespace from the text first.")
        parser.add_argument("--limit", type=int, default=1000, help="Report at most this many matches (default 1000).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object per match instead of a table.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["file"]:
            try:
                text = Path(options["file"]).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"cannot read {options['file']}: {exc}") from exc
        else:
            text = options["text"]
        if options["strip"]:
            text = text.strip()
        if not text:
            raise CommandError("the text is empty")
        matches = audit_event_match(text=text, keys=hash_keys(), limit=options["limit"])
        for match in matches:
            event = match.event
            if options["json"]:
                row = {
                    "matched": match.matched,
                    "occurred_at": event.occurred_at.isoformat(),
                    "request_id": event.request_id,
                    "team": event.team_name,
                    "key_id": event.key_id,
                    "use_case": event.key_name,
                    "model": event.model,
                    "decision": event.decision,
                    "seq": event.seq,
                }
                self.stdout.write(json.dumps(row))
            else:
                self.stdout.write(
                    f"{event.occurred_at:%Y-%m-%d %H:%M:%S%z}  {match.matched:<8}  {event.request_id}  "
                    f"team={event.team_name} key={event.key_id} use_case={event.key_name!r} model={event.model} "
                    f"decision={event.decision}"
                )
        if not options["json"]:
            self.stdout.write(f"{len(matches)} match{'es' if len(matches) != 1 else ''}")
