from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dlp.packfile import PackError, pack_names
from dlp.services import pack_apply


class Command(BaseCommand):
    help = "Install or upgrade a DLP policy pack and print what changed. Re-applying the same version changes nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("pack", help=f"A shipped pack ({', '.join(pack_names())}) or the path of a pack file.")
        parser.add_argument("--dry-run", action="store_true", help="Show what would change; write nothing.")
        parser.add_argument("--actor", default="", help="Username recorded in the audit log as the one who applied it.")
        parser.add_argument("--json", action="store_true", help="Print the diff as a JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = None
        if options["actor"]:
            actor = get_user_model().objects.filter(username=options["actor"]).first()
            if actor is None:
                raise CommandError(f"no user '{options['actor']}'")
        try:
            diff = pack_apply(name_or_path=options["pack"], actor=actor, dry_run=options["dry_run"])
        except PackError as exc:
            raise CommandError(str(exc)) from exc
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(diff.as_dict(), indent=2))
            return
        for line in diff.lines():
            self.stdout.write(line)
        self.stdout.write(diff.summary())
