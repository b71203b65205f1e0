from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from audit.checkpoints import CheckpointError, audit_checkpoint_load
from audit.selectors import UnclosedStream, audit_chain_verify, audit_streams_unclosed

LISTED = 50  # request ids printed per line; --json lists them all


class Command(BaseCommand):
    help = (
        "Walk the audit hash chain from the first row to the head and recompute every hash. "
        "Exits 0 with 'ok: N events, head <hash>', or 1 naming the first row that fails and why. "
        "Then lists streams opened and never closed (a `stream_opened` row with no `request` row: "
        "the worker died mid-stream); they are not corruption and leave the exit status at 0."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--checkpoint",
            metavar="FILE",
            help="A file written by audit_checkpoint (its last line is used): also prove the log still extends it.",
        )
        parser.add_argument("--json", action="store_true", help="Print the result as one JSON object.")
        parser.add_argument(
            "--running-minutes",
            type=float,
            default=15.0,
            metavar="M",
            help="Unclosed streams opened in the last M minutes may still be running: listed apart (default 15).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoint = None
        if options["checkpoint"]:
            try:
                checkpoint = audit_checkpoint_load(Path(options["checkpoint"]).read_text())
            except (OSError, CheckpointError) as exc:
                raise CommandError(f"checkpoint {options['checkpoint']}: {exc}") from exc
        report = audit_chain_verify(checkpoint=checkpoint.pinned() if checkpoint else None)
        since = timezone.now() - timedelta(minutes=options["running_minutes"])
        unclosed = audit_streams_unclosed(up_to_seq=report.head.seq)
        lost = [s for s in unclosed if s.occurred_at < since]
        running = [s for s in unclosed if s.occurred_at >= since]
        if options["json"]:
            failure = report.failure
            self.stdout.write(
                json.dumps(
                    {
                        "ok": report.ok,
                        "events": report.events,
                        "head_seq": report.head.seq,
                        "head": report.head.row_hash,
                        "checkpoint_seq": checkpoint.seq if checkpoint else None,
                        "failure": {"seq": failure.seq, "id": failure.id, "reason": failure.reason} if failure else None,
                        "streams_never_closed": [_entry(s) for s in lost],
                        "streams_maybe_running": [_entry(s) for s in running],
                    }
                )
            )
            if not report.ok:
                raise CommandError(report.line(), returncode=1)
            return
        if not report.ok:
            raise CommandError(report.line(), returncode=1)
        self.stdout.write(report.line())
        if lost:
            self.stdout.write(
                f"{len(lost)} stream(s) opened and never closed (the worker died mid-stream; "
                f"each has its stream_opened row, no request row): request ids {_ids(lost)}"
            )
        if running:
            minutes = f"{options['running_minutes']:g}"
            self.stdout.write(
                f"{len(running)} stream(s) opened in the last {minutes} minutes and not closed yet "
                f"(possibly still running): request ids {_ids(running)}"
            )


def _entry(stream: UnclosedStream) -> dict[str, Any]:
    return {"request_id": stream.request_id, "seq": stream.seq, "opened_at": stream.occurred_at.isoformat()}


def _ids(streams: list[UnclosedStream]) -> str:
    shown = ", ".join(s.request_id for s in streams[:LISTED])
    return shown + (f" … and {len(streams) - LISTED} more (--json lists all)" if len(streams) > LISTED else "")
