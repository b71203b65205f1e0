from __future__ import annotations

import json
from datetime import datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from teams.models import Classification, Enforcement, Team
from teams.services import api_key_issue, team_create


class Command(BaseCommand):
    help = "Issue an API key bound to one approved use case. The key is printed once and never stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="Team name (slug).")
        parser.add_argument("--create-team", action="store_true", help="Create the team if it does not exist.")
        parser.add_argument("--owner-email", default="", help="Accountable owner when --create-team creates it.")
        parser.add_argument("--name", required=True, help="The approved use case, e.g. 'Claims summariser'.")
        parser.add_argument("--purpose", default="", help="Longer description of the use case.")
        parser.add_argument("--models", required=True, help="Comma-separated public model names to allow.")
        parser.add_argument("--classification", required=True, choices=Classification.values, help="Data classification.")
        prompt = parser.add_mutually_exclusive_group(required=True)
        prompt.add_argument("--system-prompt", help="The bound system prompt text.")
        prompt.add_argument("--system-prompt-file", help="A file holding the bound system prompt.")
        parser.add_argument("--rpm", type=int, help="Requests per minute.")
        parser.add_argument("--tpm", type=int, help="Tokens per minute.")
        parser.add_argument("--max-tokens", type=int, help="Ceiling on a request's max_tokens (larger ones are clamped).")
        parser.add_argument("--max-messages", type=int, help="Most messages one request may carry.")
        parser.add_argument("--max-prompt-tokens", type=int, help="Largest prompt one request may send.")
        parser.add_argument("--max-concurrent", type=int, help="Most requests in flight at once (all workers).")
        parser.add_argument("--budget", type=Decimal, help="Spend ceiling (USD) per the team's budget period.")
        parser.add_argument(
            "--enforcement", choices=Enforcement.values, default=Enforcement.ENFORCE, help="enforce, or monitor (record only)."
        )
        parser.add_argument(
            "--tools",
            default="",
            help="Comma-separated tool names or globs the key may use, e.g. 'crm__lookup_customer,docs__*' "
            "(MCP tools are server__tool). Without it: no MCP tools, the key's own /v1 function tools allowed.",
        )
        parser.add_argument("--expires", help="Expiry date YYYY-MM-DD (end of that day, server time zone).")
        parser.add_argument("--requested-by", default="", help="Who asked for this use case.")
        parser.add_argument("--approved-by", default="", help="Username of the approving admin user.")
        parser.add_argument("--json", action="store_true", help="Print a JSON object instead of plain text.")

    def handle(self, *args: Any, **options: Any) -> None:
        team = Team.objects.filter(name=options["team"]).first()
        if team is None:
            if not options["create_team"]:
                raise CommandError(f"no team '{options['team']}' (add --create-team to create it)")
            team = team_create(name=options["team"], owner_email=options["owner_email"] or "owner@example.invalid")
        if options["system_prompt_file"]:
            system_prompt = Path(options["system_prompt_file"]).read_text()
        else:
            system_prompt = options["system_prompt"]
        approver = None
        if options["approved_by"]:
            approver = get_user_model().objects.filter(username=options["approved_by"]).first()
            if approver is None:
                raise CommandError(f"no user '{options['approved_by']}'")
        expires_at = None
        if options["expires"]:
            try:
                day = datetime.strptime(options["expires"], "%Y-%m-%d").date()
            except ValueError as exc:
                raise CommandError("--expires must be YYYY-MM-DD") from exc
            expires_at = timezone.make_aware(datetime.combine(day, time.max))
        try:
            issued = api_key_issue(
                team=team,
                name=options["name"],
                purpose=options["purpose"],
                system_prompt=system_prompt,
                models=options["models"].split(","),
                classification=options["classification"],
                rpm=options["rpm"],
                tpm=options["tpm"],
                max_tokens=options["max_tokens"],
                max_messages=options["max_messages"],
                max_prompt_tokens=options["max_prompt_tokens"],
                max_concurrent=options["max_concurrent"],
                budget=options["budget"],
                enforcement=options["enforcement"],
                expires_at=expires_at,
                requested_by=options["requested_by"],
                approved_by=approver,
                tools=options["tools"],
            )
        except ValidationError as exc:
            raise CommandError(_describe(exc)) from exc
        models = sorted(m.strip() for m in options["models"].split(",") if m.strip())
        if options["json"]:
            tools = list(issued.api_key.tool_patterns)
            summary = {"key": issued.plaintext, "id": issued.api_key.pk, "team": team.name, "models": models, "tools": tools}
            self.stdout.write(json.dumps(summary))
            return
        self.stdout.write(f"Issued key {issued.api_key.pk} '{issued.api_key.name}' for team {team.name} ({', '.join(models)}).")
        if issued.api_key.tools:
            self.stdout.write(f"Tools: {', '.join(issued.api_key.tool_patterns)}")
        self.stdout.write("Store it now: it is shown once and cannot be recovered.")
        self.stdout.write(issued.plaintext)


def _describe(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {', '.join(messages)}" for field, messages in exc.message_dict.items())
    return "; ".join(exc.messages)
