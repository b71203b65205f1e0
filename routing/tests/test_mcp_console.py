"""The console for tool governance: a key's tools, MCP servers with their last error, tool-call rows."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent, Decision
from audit.services import audit_record_mcp
from dlp.engine import Action
from routing.models import McpServer
from routing.services import mcp_server_error_record, routing_import
from synapse.audit_record import request_record
from synapse.context import DlpFinding, RequestContext
from teams.models import Classification, Team
from teams.selectors import api_key_authenticate
from teams.services import api_key_issue

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(approver) -> Client:
    client = Client()
    client.force_login(approver)
    return client


def test_a_keys_tools_are_shown_read_only(console: Client, team: Team, routing: None) -> None:
    issued = api_key_issue(
        team=team, name="Agent", system_prompt="p", models=["mock-small"],
        classification=Classification.NON_SENSITIVE, tools="crm__lookup_customer,docs__*",
    )  # fmt: skip
    page = console.get(reverse("admin:teams_apikey_change", args=[issued.api_key.pk]))
    assert page.status_code == 200
    assert b"crm__lookup_customer, docs__*" in page.content
    assert b'name="tools"' not in page.content  # not an input: the binding is fixed


def test_mcp_servers_are_listed_with_their_last_error_and_cannot_be_edited(console: Client) -> None:
    routing_import(document={"mcp_servers": [{"name": "crm", "url": "http://crm.internal/mcp", "location": "on_prem"}]})
    mcp_server_error_record(name="crm", error="MCP server 'crm' is unreachable (ConnectTimeout)")
    page = console.get(reverse("admin:routing_mcpserver_changelist"))
    assert page.status_code == 200 and b"MCP server &#x27;crm&#x27; is unreachable" in page.content
    assert console.get(reverse("admin:routing_mcpserver_add")).status_code == 403
    server = McpServer.objects.get(name="crm")
    assert server.last_error_at is not None
    assert b'name="url"' not in console.get(reverse("admin:routing_mcpserver_change", args=[server.pk])).content


def test_a_tool_call_row_shows_server_tool_and_decision(console: Client, team: Team, routing: None) -> None:
    issued = api_key_issue(
        team=team, name="Agent", system_prompt="p", models=["mock-small"],
        classification=Classification.NON_SENSITIVE, tools="crm__*",
    )  # fmt: skip
    ctx = RequestContext(
        request_id="req_tool1", endpoint="mcp", method="POST", path="/mcp", client_ip="127.0.0.1", user_agent="t",
        received_at=timezone.now(),
    )  # fmt: skip
    ctx.key = api_key_authenticate(issued.plaintext)
    ctx.model_requested = "crm__add_note"
    ctx.dlp_findings.append(DlpFinding(direction="arguments", category="AWS_CREDENTIAL", pattern="aws", action=Action.BLOCK))
    ctx.reject(decision=Decision.BLOCKED_DLP, status=200, code="dlp_blocked", message="blocked")
    row = audit_record_mcp(
        record=request_record(ctx), rpc_method="tools/call", server="crm", tool="add_note", arguments={"note": "x"}
    )
    assert (row.event_type, row.model, row.backend) == ("tool_call", "crm__add_note", "crm")
    chain = dict((stage, (verdict, detail)) for stage, verdict, detail in row.decision_chain())
    assert chain["request"] == ("passed", "mcp · tools/call · tool crm__add_note")
    assert chain["scope"] == ("passed", "crm__add_note → MCP server crm")
    assert chain["dlp"][0] == "refused" and "arguments: AWS_CREDENTIAL" in chain["dlp"][1]
    listing = console.get(reverse("admin:audit_auditevent_changelist") + "?event_type__exact=tool_call")
    assert b"crm__add_note" in listing.content and b"blocked_dlp" in listing.content
    detail = console.get(reverse("admin:audit_auditevent_change", args=[row.pk]))
    assert b"MCP server crm" in detail.content
    assert AuditEvent.objects.filter(event_type="tool_call").count() == 1
