from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from alerts.webhooks import DrainResult, webhook_deliveries_drain


class Command(BaseCommand):
    help = "Send the due alert webhooks from the outbox (the server also does this in the background)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=500, help="Most deliveries to send in one pass.")
        parser.add_argument("--loop", type=float, default=0, help="Keep draining, sleeping this many seconds between passes.")
        parser.add_argument("--json", action="store_true", help="Print the counts as a JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        while True:
            result = webhook_deliveries_drain(limit=options["limit"])
            self._report(result, as_json=options["json"])
            if not options["loop"]:
                return
            time.sleep(options["loop"])

    def _report(self, result: DrainResult, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps({"delivered": result.delivered, "retrying": result.retrying, "failed": result.failed}))
            return
        self.stdout.write(f"Delivered {result.delivered}, retrying {result.retrying}, gave up on {result.failed}.")
