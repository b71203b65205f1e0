from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from teams.models import ApiKey
from teams.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key; every worker refuses it from its next request."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("id", type=int, help="The key's numeric id (shown at issuance and in the admin).")
        parser.add_argument("--reason", default="", help="Why, for the audit trail.")

    def handle(self, *args: Any, **options: Any) -> None:
        api_key = ApiKey.objects.filter(pk=options["id"]).first()
        if api_key is None:
            raise CommandError(f"no API key with id {options['id']}")
        api_key_revoke(api_key=api_key, reason=options["reason"])
        self.stdout.write(f"revoked key {api_key.pk} '{api_key.name}' at {api_key.revoked_at:%Y-%m-%d %H:%M:%S %Z}")
