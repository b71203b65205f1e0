"""First start of a deployment: the first admin user and the first API key, from the environment.

Idempotent, so it can run on every `docker compose up`: an existing admin user is left alone,
and a team that already has an active key of that name gets no second one. The key is printed
once, when it is made; the database keeps only its hash.
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from routing.services import routing_ensure_mock, routing_import_yaml
from teams.models import ApiKey, Classification, Team
from teams.services import api_key_issue, team_create


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


class Command(BaseCommand):
    help = "Create the first admin user and first API key from SYNAPSE_BOOTSTRAP_* variables; safe to re-run."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin-username", default=_env("SYNAPSE_ADMIN_USERNAME", "admin"), help="Admin user name.")
        parser.add_argument("--admin-email", default=_env("SYNAPSE_ADMIN_EMAIL", "admin@example.invalid"), help="Admin e-mail.")
        parser.add_argument(
            "--routing", default=_env("SYNAPSE_BOOTSTRAP_ROUTING"), help="Routing YAML to import (else the mock backend)."
        )
        parser.add_argument("--team", default=_env("SYNAPSE_BOOTSTRAP_TEAM", "platform"), help="Team of the first key.")
        parser.add_argument("--owner-email", default=_env("SYNAPSE_BOOTSTRAP_OWNER_EMAIL"), help="The team's accountable owner.")
        parser.add_argument("--key-name", default=_env("SYNAPSE_BOOTSTRAP_KEY_NAME", "First key"), help="The key's use case.")
        parser.add_argument("--models", default=_env("SYNAPSE_BOOTSTRAP_MODELS", "mock-small"), help="Comma-separated models.")
        parser.add_argument(
            "--classification",
            choices=Classification.values,
            default=_env("SYNAPSE_BOOTSTRAP_CLASSIFICATION", Classification.SENSITIVE),
            help="Data classification of the first key.",
        )
        parser.add_argument(
            "--system-prompt",
            default=_env("SYNAPSE_BOOTSTRAP_SYSTEM_PROMPT", "You are a helpful assistant."),
            help="The first key's bound system prompt.",
        )
        parser.add_argument("--json", action="store_true", help="Print a JSON object (the key only when it was made).")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        admin, admin_created = self._admin(options["admin_username"], options["admin_email"])
        if options["routing"]:
            with open(options["routing"], encoding="utf-8") as handle:
                routing_import_yaml(text=handle.read(), actor=admin, source=options["routing"])
        else:
            routing_ensure_mock(actor=admin)
        team = Team.objects.filter(name=options["team"]).first() or team_create(
            name=options["team"], owner_email=options["owner_email"] or options["admin_email"], actor=admin
        )
        key = None
        if not ApiKey.objects.filter(team=team, name=options["key_name"], revoked_at__isnull=True).exists():
            key = api_key_issue(
                team=team,
                name=options["key_name"],
                system_prompt=options["system_prompt"],
                models=[m.strip() for m in options["models"].split(",") if m.strip()],
                classification=options["classification"],
                requested_by="bootstrap",
                approved_by=admin,
            )
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "admin": admin.get_username(),
                        "admin_created": admin_created,
                        "team": team.name,
                        "key": key.plaintext if key else None,
                    }
                )
            )
            return
        self.stdout.write(f"admin user '{admin.get_username()}' {'created' if admin_created else 'already exists'}")
        if key is None:
            self.stdout.write(f"team '{team.name}' already has an active key '{options['key_name']}' (shown when it was made)")
        else:
            self.stdout.write(f"first API key for team '{team.name}' (shown once, copy it now):\n\n    {key.plaintext}\n")

    def _admin(self, username: str, email: str) -> tuple[Any, bool]:
        user_model = get_user_model()
        existing = user_model.objects.filter(username=username).first()
        if existing is not None:
            return existing, False
        password = os.environ.get("SYNAPSE_ADMIN_PASSWORD", "")
        if len(password) < 12:
            raise CommandError("set SYNAPSE_ADMIN_PASSWORD (12 characters or more) to create the first admin user")
        return user_model.objects.create_superuser(username=username, email=email, password=password), True
