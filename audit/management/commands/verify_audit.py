from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.checkpoints import CheckpointError, audit_checkpoint_load
from audit.selectors import audit_chain_verify


class Command(BaseCommand):
    help = (
        "Walk the audit hash chain from the first row to the head and recompute every hash. "
        "Exits 0 with 'ok: N events, head <hash>', or 1 naming the first row that fails and why."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--checkpoint",
            metavar="FILE",
            help="A file written by audit_checkpoint (its last line is used): also prove the log still extends it.",
        )
        parser.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoint = None
        if options["checkpoint"]:
            try:
                checkpoint = audit_checkpoint_load(Path(options["checkpoint"]).read_text())
            except (OSError, CheckpointError) as exc:
                raise CommandError(f"checkpoint {options['checkpoint']}: {exc}") from exc
        report = audit_chain_verify(checkpoint=checkpoint.pinned() if checkpoint else None)
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
                    }
                )
            )
            if not report.ok:
                raise CommandError(report.line(), returncode=1)
            return
        if not report.ok:
            raise CommandError(report.line(), returncode=1)
        self.stdout.write(report.line())
