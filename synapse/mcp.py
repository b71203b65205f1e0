"""The /mcp endpoint: an MCP server (Streamable HTTP) that aggregates the registered MCP servers,
governed like /v1.

Per request, in order: the Synapse key (bearer) → the JSON-RPC message → for `tools/call` the
key's tool policy, the server's location against the key's classification, DLP on the
arguments, the key's rate limits, the upstream call, DLP on the result → one audit row
(`tool_call` for a tool call, `request` for the rest). Layers are the same ones /v1 uses.

Protocol: the handshake era of the official `mcp` SDK. Its `LATEST_PROTOCOL_VERSION`
(2026-07-28) is the stateless per-request-envelope era, entered by `server/discover`; the
SDK's `ClientSession.initialize()` offers `LATEST_HANDSHAKE_VERSION`, 2025-11-25, and accepts
only handshake versions back. So 2025-11-25 is pinned here; `initialize` echoes a client's
version if it is one we support and answers with ours otherwise (the spec's negotiation);
`server/discover` gets -32601, on which SDK clients in auto mode fall back to `initialize`.

Stateless on purpose: no `Mcp-Session-Id` is issued (the spec lets a server not assign one, and
the SDK client then sends none). Every request carries the bearer key and is authorised and
audited on its own, the gateway has nothing per session to remember (it never sends requests
to the client), and any worker or replica can answer any request without shared session
storage. Hence GET (no server-initiated stream) and DELETE (no session to end) are 405.
Responses are plain `application/json`, which the transport allows for every POST.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils import timezone

from audit.services import audit_record_mcp
from dlp.engine import Action
from dlp.inspection import Inspector, Verdict
from dlp.selectors import dlp_policy
from routing.mcp_client import McpTarget, McpUpstreamError, call_tool, list_tools
from routing.selectors import mcp_targets
from routing.services import mcp_server_error_record
from teams.limits import Reservation, limits_count_call
from teams.selectors import KeyScope, api_key_authenticate
from teams.tools import server_may_match, tool_allowed

from .anomalies import anomalies_observe
from .audit_record import request_record
from .context import Attempt, DlpFinding, McpDirection, RequestContext
from .db import run_db
from .errors import Decision, GatewayError, dlp_blocked, limit_exceeded, limits_unavailable
from .observability import audit_observed
from .schemas import parse_json
from .views import client_ip

logger = logging.getLogger("synapse.mcp")

PROTOCOL_VERSION = "2025-11-25"  # mcp_types.version.LATEST_HANDSHAKE_VERSION of mcp 2.3.0
# Revisions whose requests this server handles as specified. 2025-03-26 is not among them: it
# allowed JSON-RPC batches, which 2025-06-18 removed and this server refuses.
SUPPORTED_VERSIONS = ("2025-06-18", "2025-11-25")
SERVER_INFO = {"name": "synapse", "title": "Synapse MCP gateway", "version": "1"}
OFFERED = ("initialize", "ping", "tools/list", "tools/call")
SEPARATOR = "__"  # exposed tool names are server__tool

# JSON-RPC 2.0 codes, and ours from the implementation-defined band (-32000..-32019) clear of
# the codes the SDK uses itself (-32000, -32001) and the retired -32002.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
UNAUTHENTICATED = -32010
REFUSED = -32011  # a governance refusal: tool not allowed, classification, DLP, limits
UPSTREAM_FAILED = -32012  # the upstream MCP server failed or did not answer in time
UNAVAILABLE = -32013  # the gateway cannot audit (or count) right now: nothing is served


class RpcError(Exception):
    """A JSON-RPC error answer, with the HTTP status and the audit decision it carries."""

    def __init__(
        self,
        rpc_code: int,
        message: str,
        *,
        code: str,
        decision: Decision,
        http_status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.rpc_code = rpc_code
        self.message = message
        self.code = code
        self.decision = decision
        self.http_status = http_status
        self.headers = headers or {}


def _refused(exc: GatewayError) -> RpcError:
    """A /v1 refusal (DLP, limits) as the JSON-RPC error an MCP client sees."""
    rpc_code = UNAVAILABLE if exc.status == 503 else REFUSED
    return RpcError(rpc_code, exc.message, code=exc.code or "refused", decision=exc.decision, headers=exc.headers)


@dataclass(slots=True)
class McpCall:
    """What the audit row needs beyond the request context."""

    rpc_method: str = ""
    rpc_id: Any = None
    server: str = ""
    tool: str = ""
    arguments: Any = None
    result_text: str = ""
    server_errors: list[tuple[str, str]] = field(default_factory=list)  # (server, error) for last_error


# ── the view ────────────────────────────────────────────────────────────────────────────


async def mcp_endpoint(request: HttpRequest) -> HttpResponseBase:
    meta = request.META
    ctx = RequestContext(
        request_id=getattr(request, "synapse_request_id", "") or "",
        endpoint="mcp",
        method=request.method or "",
        path=request.path,
        client_ip=client_ip(meta),
        user_agent=meta.get("HTTP_USER_AGENT", ""),
        received_at=timezone.now(),
    )
    call = McpCall()
    try:
        response = await _handle(ctx, call, request)
    except RpcError as exc:
        ctx.reject(decision=exc.decision, status=exc.http_status, code=exc.code, message=exc.message)
        response = _error_response(ctx, call, exc)
    except asyncio.CancelledError:
        ctx.reject(decision=Decision.CLIENT_DISCONNECTED, status=499, code="client_disconnected", message="")
        await _audit(ctx, call)
        raise
    except Exception:
        logger.exception("unhandled error in /mcp request %s", ctx.request_id)
        internal = RpcError(
            INTERNAL_ERROR,
            "The gateway failed to process the request. It has been recorded; quote the x-request-id.",
            code="internal_error",
            decision=Decision.INTERNAL_ERROR,
            http_status=500,
        )
        ctx.reject(decision=internal.decision, status=internal.http_status, code=internal.code, message=internal.message)
        response = _error_response(ctx, call, internal)
    if not await _audit(ctx, call):
        # Fail closed: what cannot be audited is not served (the tool may have run; its result is withheld).
        failed = RpcError(
            UNAVAILABLE,
            "The gateway cannot write its audit record right now, so the request was not served. Retry later.",
            code="service_unavailable",
            decision=Decision.AUDIT_FAILURE,
            http_status=503,
            headers={"retry-after": "1"},
        )
        response = _error_response(ctx, call, failed)
    if ctx.reservation is not None:
        for name, value in ctx.reservation.headers().items():
            response[name] = value
    return response


def _error_response(ctx: RequestContext, call: McpCall, exc: RpcError) -> HttpResponse:
    body = {
        "jsonrpc": "2.0",
        "id": call.rpc_id,
        "error": {"code": exc.rpc_code, "message": exc.message, "data": {"code": exc.code, "request_id": ctx.request_id}},
    }
    response = JsonResponse(body, status=exc.http_status)
    for name, value in exc.headers.items():
        response[name] = value
    if exc.http_status == 401:
        response["www-authenticate"] = 'Bearer realm="synapse"'
    if exc.http_status == 405:
        response["allow"] = "POST"
    return response


async def _handle(ctx: RequestContext, call: McpCall, request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        raise RpcError(
            INVALID_REQUEST,
            f"{request.method} is not supported on /mcp: this server is stateless (no sessions to end) and sends "
            "no server-initiated messages. POST JSON-RPC messages.",
            code="method_not_allowed",
            decision=Decision.INVALID_REQUEST,
            http_status=405,
        )
    _check_origin(request)
    message = _parse(request)  # may be a RpcError to raise after authentication
    if isinstance(message, dict) and "method" in message:
        call.rpc_id = message.get("id")
    token = _bearer(request)
    ctx.key = await _authenticate(token)
    if isinstance(message, RpcError):
        raise message
    call.rpc_method = str(message.get("method") or "")
    if "method" not in message:
        return HttpResponse(status=202)  # a response to a request we never send: nothing to do
    if "id" not in message:
        return HttpResponse(status=202)  # notifications (initialized, cancelled, …) need no answer
    call.rpc_id = message["id"]
    if call.rpc_method != "initialize":
        _check_version_header(request)
    params = message.get("params") or {}
    result = await _dispatch(ctx, call, params)
    return JsonResponse({"jsonrpc": "2.0", "id": call.rpc_id, "result": result})


def _check_origin(request: HttpRequest) -> None:
    # The transport spec: servers must validate Origin (DNS rebinding). Browsers send it;
    # a page on another origin is refused, same-origin and non-browser clients pass.
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.get_host():
        raise RpcError(
            INVALID_REQUEST,
            "Cross-origin requests to /mcp are not allowed.",
            code="origin_not_allowed",
            decision=Decision.INVALID_REQUEST,
            http_status=403,
        )


def _check_version_header(request: HttpRequest) -> None:
    version = request.headers.get("mcp-protocol-version")
    if version is not None and version not in SUPPORTED_VERSIONS:
        raise RpcError(
            INVALID_REQUEST,
            f"Unsupported MCP-Protocol-Version '{version[:40]}'; this server speaks {', '.join(SUPPORTED_VERSIONS)}.",
            code="unsupported_protocol_version",
            decision=Decision.INVALID_REQUEST,
            http_status=400,
        )


def _bearer(request: HttpRequest) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _authenticate(token: str) -> KeyScope:
    scope = await run_db(api_key_authenticate, token) if token else None
    if scope is None:
        raise RpcError(
            UNAUTHENTICATED,
            "Invalid API key. Provide a valid Synapse key as 'Authorization: Bearer syn_...'.",
            code="invalid_api_key",
            decision=Decision.BLOCKED_AUTH,
            http_status=401,
        )
    return scope


def _parse(request: HttpRequest) -> dict[str, Any] | RpcError:
    """The JSON-RPC message, or the error to answer with once the caller is authenticated."""
    limit = settings.SYNAPSE["MAX_BODY_BYTES"]
    refused: GatewayError | None = getattr(request, "synapse_body_error", None)  # lean_asgi's bounded read
    if refused is not None:
        code = "payload_too_large" if refused.status == 413 else refused.code or "invalid_request"
        return RpcError(INVALID_REQUEST, refused.message, code=code, decision=refused.decision, http_status=refused.status)
    # read(), not .body: .body applies the console's DATA_UPLOAD_MAX_MEMORY_SIZE, and this
    # body's bound is MAX_BODY_BYTES (already enforced while it was read: lean_asgi.py).
    raw = request.read()
    if len(raw) > limit:
        return RpcError(
            INVALID_REQUEST,
            f"The message is larger than {limit} bytes.",
            code="payload_too_large",
            decision=Decision.INVALID_REQUEST,
            http_status=413,
        )
    try:
        message = parse_json(raw)
    except GatewayError as exc:
        # Not JSON, nested deeper than MAX_JSON_DEPTH, or not Unicode (a lone surrogate escape).
        return RpcError(
            PARSE_ERROR,
            f"Parse error: {exc.message}",
            code="parse_error",
            decision=Decision.INVALID_REQUEST,
            http_status=400,
        )
    if isinstance(message, list):
        return RpcError(
            INVALID_REQUEST,
            f"JSON-RPC batches are not supported: MCP {PROTOCOL_VERSION} sends one message per POST "
            "(batching was removed in 2025-06-18).",
            code="batch_not_supported",
            decision=Decision.INVALID_REQUEST,
            http_status=400,
        )
    problem = _shape_problem(message)
    if problem:
        return RpcError(
            INVALID_REQUEST,
            f"Invalid request: {problem}.",
            code="invalid_request",
            decision=Decision.INVALID_REQUEST,
            http_status=400,
        )
    return message


def _shape_problem(message: Any) -> str:
    if not isinstance(message, dict):
        return "the body must be a JSON-RPC 2.0 message object"
    if message.get("jsonrpc") != "2.0":
        return "'jsonrpc' must be \"2.0\""
    if "method" not in message:
        return "" if ("result" in message or "error" in message) and "id" in message else "a message needs a 'method'"
    if not isinstance(message["method"], str) or not message["method"]:
        return "'method' must be a non-empty string"
    if "id" in message and (isinstance(message["id"], bool) or not isinstance(message["id"], str | int)):
        return "'id' must be a string or an integer"
    if "params" in message and not isinstance(message["params"], dict):
        return "'params' must be an object"
    return ""


async def _dispatch(ctx: RequestContext, call: McpCall, params: dict[str, Any]) -> dict[str, Any]:
    method = call.rpc_method
    if method == "initialize":
        return _initialize(params)
    if method == "ping":
        return {}
    if method == "tools/list":
        return await _tools_list(ctx, call)
    if method == "tools/call":
        return await _tools_call(ctx, call, params)
    if method == "server/discover":
        message = f"server/discover (the stateless 2026-07-28 era) is not offered; use initialize ({PROTOCOL_VERSION})."
    else:
        message = f"Method '{method[:100]}' is not offered by the Synapse MCP gateway; it offers {', '.join(OFFERED)}."
    raise RpcError(METHOD_NOT_FOUND, message, code="method_not_found", decision=Decision.INVALID_REQUEST)


def _initialize(params: dict[str, Any]) -> dict[str, Any]:
    requested = params.get("protocolVersion")
    version = requested if requested in SUPPORTED_VERSIONS else PROTOCOL_VERSION
    return {
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": SERVER_INFO,
        "instructions": "Tools of the MCP servers registered with Synapse, named server__tool, as this API key's "
        "tool policy allows. Every call is checked, scanned and audited.",
    }


# ── tools ───────────────────────────────────────────────────────────────────────────────


def _reachable(scope: KeyScope, target: McpTarget) -> bool:
    # The classification rule of models, for tool servers: sensitive keys stay on premises.
    return target.is_on_prem or not scope.is_sensitive


async def _tools_list(ctx: RequestContext, call: McpCall) -> dict[str, Any]:
    scope = ctx.key
    assert scope is not None
    if not scope.tools:
        return {"tools": []}  # no tool policy: no MCP tools
    patterns = scope.tools
    targets = [t for t in await run_db(mcp_targets) if _reachable(scope, t) and server_may_match(patterns, t.name)]
    listings = await asyncio.gather(*(_listing(ctx, call, target) for target in targets))
    tools: list[dict[str, Any]] = []
    unavailable: list[dict[str, str]] = []
    for target, (listed, error) in zip(targets, listings, strict=True):
        if error is not None:
            unavailable.append({"server": target.name, "error": error})
            continue
        for tool in listed:
            name = f"{target.name}{SEPARATOR}{tool['name']}"
            if tool_allowed(patterns, name):
                tools.append({**tool, "name": name})
    result: dict[str, Any] = {"tools": tools}
    if unavailable:
        # Not silent: the client learns which servers' tools are missing from this list, and why.
        result["_meta"] = {"synapse.gateway/unavailable_servers": unavailable}
    return result


async def _listing(ctx: RequestContext, call: McpCall, target: McpTarget) -> tuple[list[dict[str, Any]], str | None]:
    started = time.perf_counter()
    try:
        tools = await list_tools(target, token=_credential(target))
    except McpUpstreamError as exc:
        _attempt(ctx, target, exc.code, started)
        call.server_errors.append((target.name, exc.message))
        return [], exc.message
    _attempt(ctx, target, "ok", started)
    return tools, None


def _attempt(ctx: RequestContext, target: McpTarget, outcome: str, started: float) -> None:
    latency = (time.perf_counter() - started) * 1000.0
    ctx.attempts.append(
        Attempt(backend=target.name, outcome=outcome, latency_ms=latency, status=200 if outcome == "ok" else None)
    )
    ctx.upstream_ms = max(ctx.upstream_ms or 0.0, latency)  # tools/list asks servers concurrently


def _credential(target: McpTarget) -> str:
    if not target.api_key_env:
        return ""
    token = os.environ.get(target.api_key_env, "")
    if not token:
        raise McpUpstreamError(
            f"MCP server '{target.name}': the gateway has no credential for it ({target.api_key_env} is not set)",
            code="upstream_credential_missing",
        )
    return token


def _call_params(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name, arguments = params.get("name"), params.get("arguments", {})
    if not isinstance(name, str) or not name:
        raise RpcError(
            INVALID_PARAMS,
            "tools/call needs params.name, the tool's name (server__tool).",
            code="invalid_params",
            decision=Decision.INVALID_REQUEST,
        )
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise RpcError(
            INVALID_PARAMS,
            "tools/call params.arguments must be an object.",
            code="invalid_params",
            decision=Decision.INVALID_REQUEST,
        )
    return name[:200], arguments


def _load_call(scope: KeyScope, server: str) -> tuple[McpTarget | None, Inspector, Reservation]:
    """The call's database work in one thread hop: the server, the team's DLP policy, the rpm count."""
    targets = mcp_targets(name=server)
    policy = dlp_policy(team_id=scope.team_id)
    inspector = Inspector(policy.prompt, policy.response, policy.overrides, monitor=scope.is_monitor)
    return (targets[0] if targets else None), inspector, limits_count_call(scope=scope)


async def _tools_call(ctx: RequestContext, call: McpCall, params: dict[str, Any]) -> dict[str, Any]:
    scope = ctx.key
    assert scope is not None
    name, arguments = _call_params(params)
    ctx.model_requested = name
    call.arguments = arguments
    server, _, tool = name.partition(SEPARATOR)
    call.server, call.tool = server, tool

    # 1. the key's tool policy, before anything else is looked at
    if not scope.tools:
        raise RpcError(
            REFUSED,
            f"Tool '{name}' is not allowed: this API key has no MCP tools (it was issued without a tool policy).",
            code="tool_not_allowed",
            decision=Decision.BLOCKED_SCOPE,
        )
    if not tool_allowed(scope.tools, name):
        raise RpcError(
            REFUSED, f"Tool '{name}' is not allowed for this API key.", code="tool_not_allowed", decision=Decision.BLOCKED_SCOPE
        )
    target, inspector, reservation = await run_db(_load_call, scope, server)
    ctx.reservation, ctx.dlp = reservation, inspector
    if target is None or not tool:
        call.server = ""
        raise RpcError(
            INVALID_PARAMS,
            f"Unknown tool '{name}': no MCP server '{server}' is registered.",
            code="tool_not_found",
            decision=Decision.INVALID_REQUEST,
        )
    # 2. classification: a sensitive key's tool calls stay on premises
    if not _reachable(scope, target):
        raise RpcError(
            REFUSED,
            f"Tool '{name}' runs on the cloud MCP server '{server}'; this API key is bound to sensitive data, "
            "which may only reach on-premises servers.",
            code="classification_violation",
            decision=Decision.BLOCKED_SCOPE,
        )
    # 3. DLP on the arguments, before the tool sees them
    forwarded, verdict = inspector.tool_arguments(arguments)
    _enforce(ctx, _judge(ctx, verdict, "arguments"), dlp_blocked(verdict.blocked, param="arguments"))
    # 4. limits: the call counts against the key's (and team's) requests per minute
    if reservation.unavailable:
        _enforce(ctx, True, limits_unavailable())
    for breach in reservation.breaches:
        _enforce(ctx, True, limit_exceeded(breach))
    # 5. the upstream call, with the gateway's credential for that server
    started = time.perf_counter()
    try:
        result = await call_tool(target, token=_credential(target), name=tool, arguments=forwarded)
    except McpUpstreamError as exc:
        _attempt(ctx, target, exc.code, started)
        if exc.code != "upstream_rpc_error":
            call.server_errors.append((target.name, exc.message))
        raise RpcError(
            UPSTREAM_FAILED,
            exc.message,
            code=exc.code,
            decision=Decision.UPSTREAM_TIMEOUT if exc.timeout else Decision.UPSTREAM_ERROR,
        ) from exc
    _attempt(ctx, target, "ok", started)
    # 6. DLP on the result, before the client sees it
    delivered, verdict = inspector.tool_result(result)
    if _judge(ctx, verdict, "result"):
        withheld = GatewayError(
            status=422,
            message=f"The tool's result was withheld by data-loss prevention: it contained {', '.join(verdict.blocked)}.",
            type="invalid_request_error",
            code="dlp_result_blocked",
            decision=Decision.BLOCKED_DLP,
        )
        _enforce(ctx, True, withheld)
    call.result_text = "\n".join(
        block["text"]
        for block in delivered.get("content") or []
        if isinstance(block, dict) and isinstance(block.get("text"), str)
    )
    return delivered


def _judge(ctx: RequestContext, verdict: Verdict, direction: McpDirection) -> bool:
    """Record what DLP found; whether it blocks."""
    ctx.dlp_findings.extend(
        DlpFinding(direction=direction, category=f.category, pattern=f.pattern, action=Action(f.action), count=f.count)
        for f in verdict.findings
    )
    return bool(verdict.blocked)


def _enforce(ctx: RequestContext, breached: bool, refusal: GatewayError) -> None:
    """Refuse — or, for a key in monitor mode, record the refusal and carry on (as /v1 does)."""
    if not breached:
        return
    try:
        ctx.enforce(refusal)
    except GatewayError as exc:
        raise _refused(exc) from exc


# ── audit (one thread hop) ──────────────────────────────────────────────────────────────


def _record(ctx: RequestContext, call: McpCall) -> None:
    if ctx.audited:
        return
    for server, error in call.server_errors:
        mcp_server_error_record(name=server, error=error)
    with audit_observed(ctx):  # metrics + the request's log line, once its row exists
        audit_record_mcp(
            record=request_record(ctx),
            rpc_method=call.rpc_method,
            server=call.server,
            tool=call.tool,
            arguments=call.arguments,
            result_text=call.result_text,
        )
    ctx.audited = True
    anomalies_observe(ctx, tool_call=call.rpc_method == "tools/call")  # after the row, as on /v1


async def _audit(ctx: RequestContext, call: McpCall) -> bool:
    try:
        await run_db(_record, ctx, call)
    except Exception:
        logger.exception("audit write failed for /mcp request %s", ctx.request_id)
        return False
    return True
