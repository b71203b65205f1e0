from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.checkpoints import CheckpointError, audit_checkpoint_create, audit_checkpoint_post


class Command(BaseCommand):
    help = (
        "Print the audit chain's head (sequence number and hash), HMAC-signed with AUDIT_CHECKPOINT_KEY, as one "
        "JSON line; optionally POST it to AUDIT_CHECKPOINT_URL. Keep checkpoints outside the database: "
        "they are what catches a rewrite by someone who controls the whole table."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--post", action="store_true", help="Also POST the checkpoint (JSON) to AUDIT_CHECKPOINT_URL.")
        parser.add_argument("--url", default="", help="POST to this URL instead of AUDIT_CHECKPOINT_URL (implies --post).")

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoint = audit_checkpoint_create()
        self.stdout.write(checkpoint.to_json())
        url = options["url"] or (settings.AUDIT_CHECKPOINT_URL if options["post"] else "")
        if options["post"] and not url:
            raise CommandError("--post needs AUDIT_CHECKPOINT_URL (or --url)")
        if url:
            try:
                status = audit_checkpoint_post(checkpoint, url=url, token=settings.AUDIT_CHECKPOINT_TOKEN)
            except CheckpointError as exc:
                raise CommandError(str(exc)) from exc
            self.stderr.write(f"checkpoint seq {checkpoint.seq} stored at {url} ({status})")
