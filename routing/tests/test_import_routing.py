"""import_routing: strict documents, and MCP servers registered as audited governance changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from routing.models import McpServer
from routing.services import routing_import, routing_import_yaml

pytestmark = pytest.mark.django_db

SERVERS = """
mcp_servers:
  - name: crm
    url: http://crm.internal:8080/mcp
    location: on_prem
    api_key_env: CRM_MCP_TOKEN
    timeout: 5
  - name: docs
    url: https://docs.example.com/mcp
    location: cloud
    api_key_env: DOCS_MCP_TOKEN
"""


def test_it_registers_mcp_servers_and_audits_each_registration() -> None:
    summary = routing_import_yaml(text=SERVERS, source="routing.yaml")
    assert sorted(summary.created) == ["mcp server crm", "mcp server docs"]
    crm = McpServer.objects.get(name="crm")
    assert (crm.url, crm.location, crm.api_key_env, crm.timeout) == (
        "http://crm.internal:8080/mcp",
        "on_prem",
        "CRM_MCP_TOKEN",
        5.0,
    )
    assert McpServer.objects.get(name="docs").timeout == 30.0  # the default
    events = AuditEvent.objects.filter(event_type="mcp_server_registered").order_by("seq")
    assert [e.detail["server"] for e in events] == ["crm", "docs"]
    assert events[0].detail["api_key_env"] == "CRM_MCP_TOKEN" and events[0].detail["source"] == "routing.yaml"


def test_a_change_is_audited_and_a_repeat_is_not() -> None:
    routing_import_yaml(text=SERVERS)
    again = routing_import_yaml(text=SERVERS)
    assert again.created == [] and again.updated == []
    routing_import_yaml(text=SERVERS.replace("timeout: 5", "timeout: 9"))
    event = AuditEvent.objects.get(event_type="mcp_server_updated")
    assert event.detail == {"server": "crm", "changed": {"timeout_seconds": [5.0, 9.0]}, "source": ""}
    assert McpServer.objects.get(name="crm").timeout_seconds == 9.0


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"backend": []}, "unknown key(s) at the top level: backend"),
        ({"mcp_servers": [{"name": "crm", "url": "http://x/mcp", "location": "on_prem", "api_key": "X"}]},
         "mcp_servers[0]: unknown field(s) api_key"),
        ({"backends": [{"name": "b", "kind": "mock", "location": "on_prem", "timout": 3}]},
         "backends[0]: unknown field(s) timout"),
        ({"models": [{"name": "m", "backend": "b", "price": 1}]}, "models[0]: unknown field(s) price"),
        ({"mcp_servers": [{"name": "crm", "url": "http://x/mcp", "location": "moon"}]}, "location must be on_prem or cloud"),
        ({"mcp_servers": [{"name": "crm_eu", "url": "http://x/mcp", "location": "cloud"}]}, "no underscores"),
        ({"mcp_servers": [{"name": "crm", "url": "not a url", "location": "cloud"}]}, "mcp_servers[0]"),
        ({"mcp_servers": [{"name": "crm", "url": "http://x/mcp", "location": "cloud", "timeout": 0}]}, "timeout must be"),
        ({"mcp_servers": {"name": "crm"}}, "mcp_servers: must be a list"),
    ],
)  # fmt: skip
def test_it_refuses_what_it_does_not_know(document: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        routing_import(document=document)
    assert message in "; ".join(caught.value.messages)
    assert not McpServer.objects.exists()


def test_the_command_names_the_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(SERVERS + "mcp_server:\n  - name: x\n")
    with pytest.raises(CommandError, match="unknown key\\(s\\) at the top level: mcp_server"):
        call_command("import_routing", str(path))
    assert not McpServer.objects.exists()  # nothing half-imported
