"""The /mcp gateway end to end: the official MCP client SDK → the real server → real MCP servers
built with the official SDK (one on premises, one in the cloud), each requiring its own token."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import httpx2
import pytest
from django.conf import settings
from django.core.management import call_command
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from audit.hashing import keyed_hash
from audit.models import AuditEvent
from conftest import Gateway, free_port
from dlp.services import pack_apply
from routing.models import McpServer
from routing.services import routing_import
from teams.models import Classification, Team
from teams.services import IssuedKey, api_key_issue
from tests.fakes.mcp import FakeMcpServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

AWS_KEY = "AKIAZ7Q4MB2KXN5PLR3W"
CARD = "4111 1111 1111 1111"


def lookup_customer(customer_id: str) -> str:
    """Find a customer by id."""
    return f"Customer {customer_id}: Jane Roe, card on file {CARD}"


def add_note(customer_id: str, note: str) -> str:
    """Attach a note to a customer."""
    return f"note saved for {customer_id}"


def delete_customer(customer_id: str) -> str:
    """Delete a customer."""
    return "deleted"


def export_credentials() -> str:
    """Return the integration's credentials."""
    return f"aws_access_key_id = {AWS_KEY}"


async def wait(seconds: float) -> str:
    """Take a while."""
    await asyncio.sleep(seconds)
    return "done"


def search(query: str) -> str:
    """Search the public docs."""
    return f"3 results for {query}"


@pytest.fixture(scope="module")
def crm_server() -> Iterator[FakeMcpServer]:
    tools: dict[str, Callable[..., Any]] = {
        "lookup_customer": lookup_customer,
        "add_note": add_note,
        "delete_customer": delete_customer,
        "export_credentials": export_credentials,
        "wait": wait,
    }
    server = FakeMcpServer(name="crm", token=os.environ["FAKE_MCP_CRM_TOKEN"], tools=tools).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def docs_server() -> Iterator[FakeMcpServer]:
    server = FakeMcpServer(name="docs", token=os.environ["FAKE_MCP_DOCS_TOKEN"], tools={"search": search}).start()
    yield server
    server.stop()


@pytest.fixture
def mcp_routing(db: None, routing: None, crm_server: FakeMcpServer, docs_server: FakeMcpServer) -> None:
    pack_apply(name_or_path="baseline")  # transactional tests flush what the migration installed
    crm_server.reset()
    docs_server.reset()
    routing_import(
        document={
            "mcp_servers": [
                {"name": "crm", "url": crm_server.url, "location": "on_prem", "api_key_env": "FAKE_MCP_CRM_TOKEN", "timeout": 3},
                {"name": "docs", "url": docs_server.url, "location": "cloud", "api_key_env": "FAKE_MCP_DOCS_TOKEN"},
                # Nothing listens there: connection refused.
                {"name": "offline", "url": f"http://127.0.0.1:{free_port()}/mcp", "location": "on_prem", "timeout": 2},
            ]
        }
    )


TOOLS = "crm__lookup_customer,crm__add_note,crm__export_credentials,crm__wait,docs__*,offline__*"


@pytest.fixture
def agent_key(team: Team, mcp_routing: None) -> IssuedKey:
    return api_key_issue(
        team=team, name="Support agent", system_prompt="p", models=["gpt-4o-mini"],
        classification=Classification.NON_SENSITIVE, tools=TOOLS,
    )  # fmt: skip


@pytest.fixture
def sensitive_agent_key(team: Team, mcp_routing: None) -> IssuedKey:
    return api_key_issue(
        team=team, name="Claims agent", system_prompt="p", models=["llama-3-8b"],
        classification=Classification.SENSITIVE, tools="crm__lookup_customer,docs__*",
    )  # fmt: skip


def mcp(gateway: Gateway, key: str, work: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    """Run `work` in an initialized session of the official SDK client against /mcp; an MCPError
    the server answered with is raised as such (not wrapped in the SDK's task-group errors)."""

    async def run() -> Any:
        async with (
            httpx2.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=30) as http,
            streamable_http_client(f"{gateway.base_url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            try:
                await session.initialize()
                return await work(session)
            except MCPError as exc:
                return exc

    outcome = asyncio.run(run())
    if isinstance(outcome, MCPError):
        raise outcome
    return outcome


def call(gateway: Gateway, key: IssuedKey, name: str, arguments: dict[str, Any] | None = None) -> Any:
    return mcp(gateway, key.plaintext, lambda s: s.call_tool(name, arguments or {}))


def refusal(gateway: Gateway, key: IssuedKey, name: str, arguments: dict[str, Any] | None = None) -> MCPError:
    with pytest.raises(MCPError) as caught:
        call(gateway, key, name, arguments)
    return caught.value


def tool_row() -> AuditEvent:
    return AuditEvent.objects.filter(event_type="tool_call").latest("seq")


def verify_audit() -> str:
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


def test_tools_list_shows_only_the_keys_tools(gateway: Gateway, agent_key: IssuedKey) -> None:
    result = mcp(gateway, agent_key.plaintext, lambda s: s.list_tools())
    names = sorted(tool.name for tool in result.tools)
    # delete_customer is off the list; the offline server's tools cannot be listed.
    assert names == ["crm__add_note", "crm__export_credentials", "crm__lookup_customer", "crm__wait", "docs__search"]
    lookup = next(tool for tool in result.tools if tool.name == "crm__lookup_customer")
    assert lookup.input_schema["required"] == ["customer_id"]
    assert result.meta is not None
    unavailable = result.meta["synapse.gateway/unavailable_servers"]
    assert [entry["server"] for entry in unavailable] == ["offline"] and "unreachable" in unavailable[0]["error"]
    assert "unreachable" in McpServer.objects.get(name="offline").last_error


def test_a_sensitive_key_sees_only_on_prem_servers(
    gateway: Gateway, sensitive_agent_key: IssuedKey, docs_server: FakeMcpServer
) -> None:
    result = mcp(gateway, sensitive_agent_key.plaintext, lambda s: s.list_tools())
    assert [tool.name for tool in result.tools] == ["crm__lookup_customer"]
    assert docs_server.seen == []  # the cloud server was not even asked


def test_a_key_without_tools_has_no_mcp_tools(gateway: Gateway, cloud_key: IssuedKey, mcp_routing: None) -> None:
    assert mcp(gateway, cloud_key.plaintext, lambda s: s.list_tools()).tools == []
    error = refusal(gateway, cloud_key, "docs__search", {"query": "x"})
    assert error.error.data["code"] == "tool_not_allowed" and "no MCP tools" in error.error.message


def test_an_allowed_call_reaches_the_tool_with_the_gateways_credential(
    gateway: Gateway, agent_key: IssuedKey, docs_server: FakeMcpServer
) -> None:
    result = call(gateway, agent_key, "docs__search", {"query": "refund policy"})
    assert not result.is_error and result.content[0].text == "3 results for refund policy"
    assert docs_server.calls == [("search", {"query": "refund policy"})]
    # Every HTTP request the docs server saw carried the gateway's env token, never the client's key.
    tokens = {seen.headers.get("authorization") for seen in docs_server.seen}
    assert tokens == {f"Bearer {os.environ['FAKE_MCP_DOCS_TOKEN']}"}
    assert not any(agent_key.plaintext in json.dumps(seen.headers) for seen in docs_server.seen)

    row = tool_row()
    assert (row.endpoint, row.model, row.backend, row.decision, row.status) == ("mcp", "docs__search", "docs", "allowed", 200)
    assert row.key_id == agent_key.api_key.pk and row.detail["tool"] == "search" and row.detail["server"] == "docs"
    secret = settings.AUDIT_HASH_KEY[1]
    assert row.prompt_hmac == keyed_hash('{"query":"refund policy"}', secret=secret)
    assert row.response_hmac == keyed_hash("3 results for refund policy", secret=secret)
    assert [a["outcome"] for a in row.attempts] == ["ok"]
    assert "ok:" in verify_audit()


def test_an_off_list_tool_is_refused_and_never_runs(gateway: Gateway, agent_key: IssuedKey, crm_server: FakeMcpServer) -> None:
    error = refusal(gateway, agent_key, "crm__delete_customer", {"customer_id": "42"})
    assert error.error.data["code"] == "tool_not_allowed" and "crm__delete_customer" in error.error.message
    assert crm_server.calls == []
    row = tool_row()
    assert (row.model, row.decision, row.error_code) == ("crm__delete_customer", "blocked_scope", "tool_not_allowed")


def test_a_cloud_tool_is_refused_for_a_sensitive_key(
    gateway: Gateway, sensitive_agent_key: IssuedKey, docs_server: FakeMcpServer
) -> None:
    error = refusal(gateway, sensitive_agent_key, "docs__search", {"query": "x"})
    assert error.error.data["code"] == "classification_violation" and "on-premises" in error.error.message
    assert docs_server.seen == []
    assert (tool_row().decision, tool_row().error_code) == ("blocked_scope", "classification_violation")


def test_a_secret_in_the_arguments_is_blocked_before_the_tool_runs(
    gateway: Gateway, agent_key: IssuedKey, crm_server: FakeMcpServer
) -> None:
    error = refusal(gateway, agent_key, "crm__add_note", {"customer_id": "42", "note": f"key is {AWS_KEY}"})
    assert error.error.data["code"] == "dlp_blocked" and "AWS" in error.error.message
    assert AWS_KEY not in error.error.message
    assert crm_server.calls == []
    row = tool_row()
    assert row.decision == "blocked_dlp"
    assert ("arguments", "AWS_CREDENTIAL", "block") in [(f["direction"], f["category"], f["action"]) for f in row.dlp]


def test_a_card_in_the_arguments_is_redacted_before_the_tool_sees_it(
    gateway: Gateway, agent_key: IssuedKey, crm_server: FakeMcpServer
) -> None:
    result = call(gateway, agent_key, "crm__add_note", {"customer_id": "42", "note": f"customer paid with {CARD}"})
    assert not result.is_error
    [(tool, arguments)] = crm_server.calls
    assert tool == "add_note" and arguments["customer_id"] == "42"
    assert CARD not in arguments["note"] and arguments["note"].startswith("customer paid with ")
    row = tool_row()
    assert row.decision == "allowed"
    assert ("arguments", "CREDIT_CARD", "redact") in [(f["direction"], f["category"], f["action"]) for f in row.dlp]


def test_a_card_in_the_result_is_redacted(gateway: Gateway, agent_key: IssuedKey) -> None:
    result = call(gateway, agent_key, "crm__lookup_customer", {"customer_id": "42"})
    text = result.content[0].text
    assert text.startswith("Customer 42: Jane Roe") and CARD not in text
    assert CARD not in json.dumps(result.structured_content)  # the structured copy too
    row = tool_row()
    assert ("result", "CREDIT_CARD", "redact") in [(f["direction"], f["category"], f["action"]) for f in row.dlp]
    assert row.response_hmac == keyed_hash(text, secret=settings.AUDIT_HASH_KEY[1])


def test_a_result_with_a_credential_is_withheld(gateway: Gateway, agent_key: IssuedKey, crm_server: FakeMcpServer) -> None:
    error = refusal(gateway, agent_key, "crm__export_credentials")
    assert error.error.data["code"] == "dlp_result_blocked" and AWS_KEY not in error.error.message
    assert crm_server.calls == [("export_credentials", {})]  # it ran; its answer never left the gateway
    assert tool_row().decision == "blocked_dlp"


def test_an_unreachable_server_is_a_clear_audited_error(gateway: Gateway, agent_key: IssuedKey) -> None:
    started = time.monotonic()
    error = refusal(gateway, agent_key, "offline__anything")
    assert time.monotonic() - started < 10
    assert error.error.data["code"] == "upstream_unreachable" and "offline" in error.error.message
    row = tool_row()
    assert (row.decision, row.backend, row.error_code) == ("upstream_error", "offline", "upstream_unreachable")
    server = McpServer.objects.get(name="offline")
    assert "unreachable" in server.last_error and server.last_error_at is not None


def test_a_server_that_does_not_answer_in_time_times_out(gateway: Gateway, agent_key: IssuedKey) -> None:
    started = time.monotonic()
    error = refusal(gateway, agent_key, "crm__wait", {"seconds": 30})
    assert time.monotonic() - started < 10  # the crm server's timeout is 3 s
    assert error.error.data["code"] == "upstream_timeout" and "3 s" in error.error.message
    assert tool_row().decision == "upstream_timeout"


def test_a_bad_key_gets_401_and_is_audited(gateway: Gateway, agent_key: IssuedKey) -> None:
    with pytest.raises(MCPError) as caught:
        mcp(gateway, agent_key.plaintext + "x", lambda s: s.list_tools())
    assert caught.value.error.data["code"] == "invalid_api_key"
    response = httpx.post(
        f"{gateway.base_url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"authorization": "Bearer syn_nope_nope"},
    )
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == -32010 and response.json()["id"] == 1
    rows = AuditEvent.objects.filter(endpoint="mcp", decision="blocked_auth")
    assert rows.count() == 2 and all(row.key_id is None for row in rows)


def test_rate_limits_count_tool_calls(gateway: Gateway, team: Team, mcp_routing: None, docs_server: FakeMcpServer) -> None:
    key = api_key_issue(
        team=team, name="Limited", system_prompt="p", models=["gpt-4o-mini"],
        classification=Classification.NON_SENSITIVE, tools="docs__*", rpm=2,
    )  # fmt: skip
    for _ in range(2):
        assert not call(gateway, key, "docs__search", {"query": "a"}).is_error
    error = refusal(gateway, key, "docs__search", {"query": "a"})
    assert error.error.data["code"] == "rate_limit_exceeded"
    assert len(docs_server.calls) == 2
    assert tool_row().decision == "blocked_limit"


def test_every_mcp_request_leaves_one_row_and_the_chain_verifies(gateway: Gateway, agent_key: IssuedKey) -> None:
    before = AuditEvent.objects.filter(endpoint="mcp").count()
    mcp(gateway, agent_key.plaintext, lambda s: s.send_ping())  # initialize, initialized, ping
    rows = list(AuditEvent.objects.filter(endpoint="mcp").order_by("seq")[before:])
    assert [row.detail["rpc_method"] for row in rows] == ["initialize", "notifications/initialized", "ping"]
    assert {row.event_type for row in rows} == {"request"}
    assert "ok:" in verify_audit()


# ── the protocol, on the wire ──


def post(gateway: Gateway, key: IssuedKey, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{gateway.base_url}/mcp",
        content=content,
        headers={"authorization": f"Bearer {key.plaintext}", "content-type": "application/json", **headers},
        timeout=30,
    )


def test_initialize_negotiates_the_version_and_issues_no_session(gateway: Gateway, agent_key: IssuedKey) -> None:
    def initialize(version: str) -> httpx.Response:
        params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        return post(gateway, agent_key, {"jsonrpc": "2.0", "id": "a", "method": "initialize", "params": params})

    ours = initialize("2025-11-25")
    assert ours.status_code == 200 and ours.headers["content-type"] == "application/json"
    assert ours.json()["result"]["protocolVersion"] == "2025-11-25" and "mcp-session-id" not in ours.headers
    assert ours.json()["result"]["capabilities"] == {"tools": {"listChanged": False}}
    assert initialize("2025-06-18").json()["result"]["protocolVersion"] == "2025-06-18"
    assert initialize("2024-11-05").json()["result"]["protocolVersion"] == "2025-11-25"  # ours; the client decides


@pytest.mark.parametrize(
    ("body", "status", "code", "text"),
    [
        (b"{not json", 400, -32700, "Parse error"),
        ([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], 400, -32600, "batches are not supported"),
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, 400, -32600, "'jsonrpc' must be"),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, 400, -32600, "'id' must be"),
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": []}, 400, -32600, "'params' must be an object"),
        ({"jsonrpc": "2.0", "id": 1, "method": "resources/list"}, 200, -32601, "not offered"),
        ({"jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": {"name": "x"}}, 200, -32601, "not offered"),
        ({"jsonrpc": "2.0", "id": 1, "method": "sampling/createMessage", "params": {}}, 200, -32601, "not offered"),
        ({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}, 200, -32601, "use initialize"),
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"arguments": {}}}, 200, -32602, "params.name"),
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "crm__lookup_customer", "arguments": "x"}},
         200, -32602, "must be an object"),
    ],
)  # fmt: skip
def test_it_answers_bad_messages_with_the_right_json_rpc_error(
    gateway: Gateway, agent_key: IssuedKey, body: Any, status: int, code: int, text: str
) -> None:
    response = post(gateway, agent_key, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and text in error["message"]
    assert error["data"]["request_id"] == response.headers["x-request-id"]
    row = AuditEvent.objects.get(request_id=response.headers["x-request-id"])
    assert row.endpoint == "mcp" and row.decision != "allowed"


def test_notifications_get_202_and_no_body(gateway: Gateway, agent_key: IssuedKey) -> None:
    response = post(gateway, agent_key, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert response.status_code == 202 and response.content == b""


def test_get_and_delete_are_405_and_unsupported_versions_400(gateway: Gateway, agent_key: IssuedKey) -> None:
    for method in ("GET", "DELETE"):
        response = httpx.request(method, f"{gateway.base_url}/mcp", headers={"authorization": f"Bearer {agent_key.plaintext}"})
        assert response.status_code == 405 and response.headers["allow"] == "POST"
    response = post(gateway, agent_key, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, **{"mcp-protocol-version": "2024-01-01"})
    assert response.status_code == 400 and "Unsupported MCP-Protocol-Version" in response.json()["error"]["message"]
    ok = post(gateway, agent_key, {"jsonrpc": "2.0", "id": 7, "method": "ping"}, **{"mcp-protocol-version": "2025-11-25"})
    assert ok.json() == {"jsonrpc": "2.0", "id": 7, "result": {}}


def test_a_cross_origin_browser_request_is_refused(gateway: Gateway, agent_key: IssuedKey) -> None:
    response = post(gateway, agent_key, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, origin="https://evil.example")
    assert response.status_code == 403 and response.json()["error"]["data"]["code"] == "origin_not_allowed"


def test_unknown_tools_and_servers(gateway: Gateway, team: Team, mcp_routing: None) -> None:
    key = api_key_issue(
        team=team, name="Everything", system_prompt="p", models=["gpt-4o-mini"],
        classification=Classification.NON_SENSITIVE, tools="*__*",
    )  # fmt: skip
    call_ = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    response = post(gateway, key, {**call_, "params": {"name": "nosuch__tool", "arguments": {}}})
    assert response.json()["error"]["code"] == -32602 and response.json()["error"]["data"]["code"] == "tool_not_found"
    # A server that does not know the tool answers for itself (the SDK's servers: an error result).
    result = post(gateway, key, {**call_, "params": {"name": "docs__nosuch", "arguments": {}}}).json()["result"]
    assert result["isError"] is True and "nosuch" in result["content"][0]["text"]


def test_repeated_tool_refusals_raise_one_alert(gateway: Gateway, agent_key: IssuedKey, crm_server: FakeMcpServer) -> None:
    from alerts.models import Alert, AlertKind, AnomalyRule
    from alerts.services import anomaly_rule_update

    rule = AnomalyRule.objects.filter(kind=AlertKind.TOOL_REFUSALS).first() or AnomalyRule.default(AlertKind.TOOL_REFUSALS)
    rule.save()
    anomaly_rule_update(rule=rule, changes={"threshold": 3, "window_minutes": 10, "cooldown_minutes": 30, "enabled": True})
    for _ in range(2):
        refusal(gateway, agent_key, "crm__delete_customer", {"customer_id": "42"})
    assert not Alert.objects.filter(kind=AlertKind.TOOL_REFUSALS).exists()
    refusal(gateway, agent_key, "crm__add_note", {"customer_id": "42", "note": AWS_KEY})  # a DLP block counts too
    refusal(gateway, agent_key, "crm__delete_customer", {"customer_id": "43"})  # within the cooldown: no second alert
    [alert] = Alert.objects.filter(kind=AlertKind.TOOL_REFUSALS)
    assert alert.key_id == agent_key.api_key.pk and alert.detail["refusals"] == 3
    assert alert.detail["tools"] == ["crm__add_note", "crm__delete_customer"]
    assert crm_server.calls == []
