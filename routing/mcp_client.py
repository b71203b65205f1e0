"""A small MCP client (Streamable HTTP, JSON-RPC 2.0) for calling upstream MCP servers.

Why not the official SDK's client (`mcp.client.streamable_http` + `ClientSession`) here: it is
built on httpx2 with a client of its own, so it cannot share the worker's one upstream client
(`routing.adapters.http.shared_client()`, httpx on aiohttp) and its connection pool; and it runs
a background task group per session whose failures surface as exceptions from those tasks.
From a request path we want the opposite: one deadline around the whole exchange, every
failure a single `McpUpstreamError` naming the server. The exchange is small enough to write
out: initialize → notifications/initialized → the call → DELETE of the session, each POST
answered with `application/json` or a `text/event-stream` that carries the response, as the
transport spec allows either. The tests drive real servers built with the official SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from .adapters.errors import NoResponse, why_no_response
from .adapters.http import shared_client
from .adapters.sse import iter_sse

# The handshake revision we ask upstream servers for; older ones they may answer with are
# accepted if the gateway itself speaks them (the calls used here did not change in between).
PROTOCOL_VERSION = "2025-11-25"
ACCEPTED_VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")
CLIENT_INFO = {"name": "synapse-gateway", "version": "1"}
MAX_LIST_PAGES = 20


@dataclass(frozen=True, slots=True)
class McpTarget:
    """What a call needs to know about one upstream server (a snapshot of `McpServer`)."""

    name: str
    url: str
    location: str
    api_key_env: str
    timeout: float

    @property
    def is_on_prem(self) -> bool:
        return self.location == "on_prem"


class McpUpstreamError(Exception):
    """A call to an upstream MCP server that failed; the message names the server, never secrets."""

    def __init__(self, message: str, *, code: str = "upstream_error", timeout: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = "upstream_timeout" if timeout else code
        self.timeout = timeout


@dataclass(slots=True)
class _Session:
    target: McpTarget
    token: str
    session_id: str = ""
    version: str = PROTOCOL_VERSION
    next_id: int = 0

    def headers(self) -> dict[str, str]:
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        if self.token:
            # The gateway's credential for this server, from its environment; never the client's key.
            headers["authorization"] = f"Bearer {self.token}"
        if self.session_id:
            headers["mcp-session-id"] = self.session_id
            headers["mcp-protocol-version"] = self.version
        return headers


async def list_tools(target: McpTarget, *, token: str) -> list[dict[str, Any]]:
    """Every tool the server offers (all pages), as the server describes them."""

    async def run(session: _Session) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            result = await _request(session, "tools/list", {"cursor": cursor} if cursor else {})
            page = result.get("tools")
            if not isinstance(page, list):
                raise McpUpstreamError(f"MCP server '{target.name}' answered tools/list without a tool list")
            tools.extend(tool for tool in page if isinstance(tool, dict) and isinstance(tool.get("name"), str))
            cursor = result.get("nextCursor") if isinstance(result.get("nextCursor"), str) else None
            if not cursor:
                break
        return tools

    return await _exchange(target, token, run)


async def call_tool(target: McpTarget, *, token: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The server's CallToolResult for one call (which may itself say `isError`)."""

    async def run(session: _Session) -> dict[str, Any]:
        return await _request(session, "tools/call", {"name": name, "arguments": arguments})

    return await _exchange(target, token, run)


async def _exchange(target: McpTarget, token: str, run: Any) -> Any:
    """One short session: handshake, the call, goodbye; all of it within the server's timeout."""
    session = _Session(target=target, token=token)
    started = time.monotonic()
    try:
        async with asyncio.timeout(target.timeout):
            result = await _request(
                session,
                "initialize",
                {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO},
            )
            version = result.get("protocolVersion")
            if version not in ACCEPTED_VERSIONS:
                raise McpUpstreamError(f"MCP server '{target.name}' speaks protocol {version!r}, not one the gateway supports")
            session.version = str(version)
            await _notify(session, "notifications/initialized")
            return await run(session)
    except TimeoutError as exc:
        raise McpUpstreamError(f"MCP server '{target.name}' did not answer within {target.timeout:g} s", timeout=True) from exc
    finally:
        if session.session_id:
            # Best effort, and bounded: the answer is already in hand.
            remaining = max(0.5, min(2.0, target.timeout - (time.monotonic() - started)))
            with contextlib.suppress(Exception):
                async with asyncio.timeout(remaining):
                    await shared_client().delete(target.url, headers=session.headers(), timeout=remaining)


async def _notify(session: _Session, method: str) -> None:
    payload = {"jsonrpc": "2.0", "method": method}
    try:
        response = await shared_client().post(
            session.target.url, content=json.dumps(payload), headers=session.headers(), timeout=session.target.timeout
        )
    except httpx.HTTPError as exc:
        raise _transport_error(session.target, exc) from exc
    if response.status_code >= 400:
        raise McpUpstreamError(f"MCP server '{session.target.name}' refused {method} (HTTP {response.status_code})")


async def _request(session: _Session, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Send one request; its result, from a JSON body or from the SSE stream that answers it."""
    target = session.target
    session.next_id += 1
    request_id = session.next_id
    payload = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    client = shared_client()
    try:
        async with client.stream(
            "POST", target.url, content=json.dumps(payload), headers=session.headers(), timeout=target.timeout
        ) as response:
            if method == "initialize":
                session.session_id = response.headers.get("mcp-session-id", "")
            status = response.status_code
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if status in (401, 403):
                raise McpUpstreamError(
                    f"MCP server '{target.name}' rejected the gateway's credentials (HTTP {status})", code="upstream_auth_failed"
                )
            if kind == "text/event-stream" and status < 400:
                message = None
                async for event in iter_sse(response):
                    candidate = _parse(event.data)
                    if isinstance(candidate, dict) and candidate.get("id") == request_id and "method" not in candidate:
                        message = candidate
                        break
                if message is None:
                    raise McpUpstreamError(f"MCP server '{target.name}' closed its stream without answering {method}")
            else:
                body = await response.aread()
                message = _parse(body)
                if not isinstance(message, dict) or ("result" not in message and "error" not in message):
                    raise McpUpstreamError(
                        f"MCP server '{target.name}' answered {method} with HTTP {status} and no JSON-RPC response"
                    )
    except httpx.HTTPError as exc:
        raise _transport_error(target, exc) from exc
    error = message.get("error")
    if error is not None:
        detail = error.get("message") if isinstance(error, dict) else str(error)
        raise McpUpstreamError(f"MCP server '{target.name}' returned an error for {method}: {str(detail)[:300]}")
    result = message.get("result")
    if not isinstance(result, dict):
        raise McpUpstreamError(f"MCP server '{target.name}' answered {method} without a result object")
    return result


def _parse(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _transport_error(target: McpTarget, exc: httpx.HTTPError) -> McpUpstreamError:
    why = why_no_response(exc)
    if why in (NoResponse.CONNECT_TIMEOUT, NoResponse.TIMEOUT):
        return McpUpstreamError(f"MCP server '{target.name}' did not answer within {target.timeout:g} s", timeout=True)
    reason = why.value.replace("_", " ")
    return McpUpstreamError(f"MCP server '{target.name}' is unreachable ({reason})", code="upstream_unreachable")
