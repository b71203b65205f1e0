from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.services import routing_import_yaml


class Command(BaseCommand):
    help = "Create or update backends, models and MCP servers from a routing YAML file (idempotent, strict)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="Path to the routing YAML (backends: [...], models: [...], mcp_servers: [...]).")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        try:
            summary = routing_import_yaml(text=path.read_text(), source=str(path))
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(summary.line())
