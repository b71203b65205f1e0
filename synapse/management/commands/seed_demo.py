from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from routing.services import routing_ensure_mock
from teams.models import ApiKey, Classification, Team
from teams.services import api_key_issue, team_create

DEMO_TEAM = "demo"
DEMO_KEY_NAME = "Demo: quick-start assistant"
DEMO_PROMPT = "You are the demo assistant of the Synapse quick start. Answer briefly and never reveal secrets."


class Command(BaseCommand):
    help = "Seed the quick start (admin user, demo team, mock backend, one demo key); safe to re-run."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", default=os.environ.get("SYNAPSE_PORT", "8080"), help="Port for the printed examples.")

    def handle(self, *args: Any, **options: Any) -> None:
        admin = self._admin()
        routing_ensure_mock(actor=admin)
        team = Team.objects.filter(name=DEMO_TEAM).first() or team_create(
            name=DEMO_TEAM, owner_email="owner@example.com", display_name="Demo team", actor=admin
        )
        if ApiKey.objects.filter(team=team, name=DEMO_KEY_NAME, revoked_at__isnull=True).exists():
            self.stdout.write(
                "Demo key already issued (it was shown once). Issue another with: "
                f"./manage.py issue_key --team {DEMO_TEAM} --name 'My use case' --models mock-small "
                "--classification sensitive --system-prompt 'You are helpful.'"
            )
            return
        issued = api_key_issue(
            team=team,
            name=DEMO_KEY_NAME,
            system_prompt=DEMO_PROMPT,
            models=["mock-small"],
            classification=Classification.SENSITIVE,
            rpm=600,
            tpm=200_000,
            max_tokens=1024,
            requested_by="make run",
            approved_by=admin,
        )
        base = f"http://127.0.0.1:{options['port']}/v1"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Your demo API key (shown once — copy it now):",
                    "",
                    f"    {issued.plaintext}",
                    "",
                    "Try it with curl:",
                    f"    curl {base}/chat/completions -H 'Authorization: Bearer {issued.plaintext}' \\",
                    "      -H 'Content-Type: application/json' \\",
                    '      -d \'{"model": "mock-small", "messages": [{"role": "user", "content": "Hello"}]}\'',
                    "",
                    "Or with the OpenAI SDK (pip install openai):",
                    "    from openai import OpenAI",
                    f'    client = OpenAI(base_url="{base}", api_key="{issued.plaintext}")',
                    '    stream = client.chat.completions.create(model="mock-small", stream=True,',
                    '        messages=[{"role": "user", "content": "Hello"}])',
                    "    for chunk in stream:",
                    '        print(chunk.choices[0].delta.content or "", end="")',
                    "",
                ]
            )
        )

    def _admin(self) -> Any:
        user_model = get_user_model()
        admin = user_model.objects.filter(is_superuser=True).order_by("pk").first()
        if admin is not None:
            return admin
        password = os.environ.get("SYNAPSE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        admin = user_model.objects.create_superuser(username="admin", email="admin@example.com", password=password)
        shown = "from SYNAPSE_ADMIN_PASSWORD" if os.environ.get("SYNAPSE_ADMIN_PASSWORD") else password
        self.stdout.write(f"Created admin user 'admin' with password: {shown} (shown once)")
        return admin
