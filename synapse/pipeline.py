"""The /v1 request pipeline: the one place that calls each governance layer, in order.

    1 teams/    authenticate the key, apply its bound scope (prompt, allowlist, classification)
    2 dlp/      scan the prompt (block / redact / alert)
    3 teams/    limits: rate, tokens and budget held before the call, settled after it
    4 routing/  call the backend(s): retries, classification-safe fallbacks, circuit breaker
    5 dlp/      scan the answer, streams through a hold-back window
    6 audit/    record the finished context, durably, before the client gets the answer;
                then the anomaly rules (alerts/). A stream gets an opening row before its
                first byte and this row when it ends (_start_stream)

Layers never import this module. Database work is grouped so a request makes two
transactions: one thread hop before the upstream call (key, route, DLP policy and prompt scan,
limit holds), and its audit row, which the process's audit writer commits together with the
rows of the requests finishing at the same moment, with their limit settlements
(audit/group_commit.py). A stream's opening row goes the same way. The anomaly rules run after
that, off the response path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db import DatabaseError, OperationalError, transaction
from django.http import HttpResponseBase, JsonResponse, StreamingHttpResponse

from audit.group_commit import Companion, Written, audit_append_with, group_commit_enabled, group_committer
from audit.services import request_values, stream_opened_values
from dlp.budget import ScanBudgetError
from dlp.engine import Action, Direction
from dlp.inspection import Inspector, StreamFilter, Verdict, non_text_input, non_text_parts
from dlp.selectors import dlp_policy
from routing.adapters import UpstreamError
from routing.boundary import may_reach
from routing.dispatch import AttemptRecord, Dispatcher, dispatch
from routing.selectors import Route
from routing.services import backend_health_settle
from teams.limits import Settlement, SpendLevel, limits_reserve, limits_settle_many
from teams.scope import bind_system_prompt
from teams.scope_cache import ScopeChangedError, scope_cache_enabled, scope_forget, scope_kept, scope_read, scope_stamp_verify
from teams.selectors import KeyScope, allowed_model_names, api_key_authenticate_for
from teams.tokens import count_chat, count_output

from .anomalies import anomalies_observe, anomalies_submit
from .audit_record import request_record
from .context import Attempt, DlpFinding, RequestContext
from .db import on_caller_thread, on_loop, run_db
from .errors import (
    Decision,
    GatewayError,
    authentication_failed,
    classification_violation,
    dlp_blocked,
    dlp_response_blocked,
    dlp_unreadable_content,
    dlp_unscannable,
    internal_error,
    limit_exceeded,
    limits_unavailable,
    model_not_allowed,
    service_unavailable,
    undeclared_tool_call,
    upstream_failed,
    upstream_over_reservation,
)
from .metrics import audit_write_timer
from .observability import audit_observed
from .otel import stage_span
from .scans import run_scan
from .schemas import check_fields, first_error, validate_chat, validate_embeddings
from .shutdown import disconnect_verdict
from .tool_policy import tools_admit, undeclared_call
from .wire import StreamEncoder, Wire
from .wire.doors import CHAT, MESSAGES
from .wire.messages import count_tokens_response
from .wire.messages_request import to_chat_for_count

logger = logging.getLogger("synapse.pipeline")

_MILLION = Decimal(1_000_000)


# ── stage 1: key + route (one thread hop) ──────────────────────────────────────────────


def _load_scope(raw_key: str, model: str, ctx: RequestContext) -> tuple[KeyScope | None, Route | None]:
    cacheable = bool(model) and ctx.endpoint in GOVERNED_ENDPOINTS and scope_cache_enabled()
    kept = scope_kept(raw_key, model=model) if cacheable else None
    if kept is not None:
        # No transaction: the holds' one statement checks the kept scope and commits itself.
        body = ctx.body
        try:
            return _scope_and_holds(ctx, kept.scope, kept.route, stamp=kept.stamp)
        except ScopeChangedError:
            scope_forget(raw_key, model=model)
            ctx.scope_restart(body)  # nothing was held: start the hop over on a fresh read
    # One transaction for the hop's reads and holds: one commit, not one per statement.
    with transaction.atomic():
        # One statement for the key and the route.
        scope, route = scope_read(raw_key, model=model) if cacheable else api_key_authenticate_for(raw_key, model=model)
        return _scope_and_holds(ctx, scope, route)


def _scope_and_holds(
    ctx: RequestContext, scope: KeyScope | None, route: Route | None, *, stamp: int | None = None
) -> tuple[KeyScope | None, Route | None]:
    """DLP's prompt scan and the limits' holds for a valid key and route. `stamp`: the scope was
    kept between requests (teams/scope_cache.py); checked here, by the holds or on its own."""
    if scope is not None and route is not None and ctx.endpoint in GOVERNED_ENDPOINTS:
        # DLP: the team's policy rides this hop too (cached per worker, reloaded on change).
        policy = dlp_policy(team_id=scope.team_id)
        ctx.dlp = Inspector(policy.prompt, policy.response, policy.overrides, monitor=scope.is_monitor)
        field = _prompt_field(ctx)
        if field is not None and ctx.dlp.prompt_size(ctx.body) > settings.SYNAPSE["DLP_LARGE_PROMPT_BYTES"]:
            ctx.scan_deferred = True  # scanned on the scan pool, then reserved (_authorise)
        else:
            if field is not None:
                _prescan(ctx, ctx.dlp, field)
            _reserve(ctx, scope, route, stamp=stamp)
    if stamp is not None and not (ctx.reservation is not None and ctx.reservation.stamp_checked):
        scope_stamp_verify(stamp)  # nothing held on the database that could check it
    return scope, route


def _reserve(ctx: RequestContext, scope: KeyScope, route: Route, *, stamp: int | None = None) -> None:
    if ctx.prompt_unscanned is not None:
        # Refused before the limits are enforced: counting the tokens of a prompt too big or
        # too costly to scan (seconds for megabytes of digits) would be work for nothing.
        return
    # Limits are counted and held in the scope's hop (no extra thread switch), enforced by each
    # endpoint after the scope and DLP checks (_enforce_limits), settled with the audit row (_settle_with_rows).
    ctx.reservation = limits_reserve(
        scope=scope,
        endpoint=ctx.endpoint,
        body=ctx.body,
        model=route.upstream_model,
        input_price_per_mtok=route.input_price_per_mtok,
        output_price_per_mtok=route.output_price_per_mtok,
        system_prompt=scope.system_prompt if ctx.endpoint in CHAT_ENDPOINTS else "",
        now=ctx.received_at,
        # The hop's transaction ends with the holds (_load_scope, _reserve_alone); on a kept
        # scope the hop has none (the statement commits itself).
        commit=stamp is None,
        stamp=stamp,
    )
    reservation = ctx.reservation
    # Only inside the hop's transaction: a kept scope's hop has none (_load_scope).
    if reservation.unavailable and reservation.rolled_back_with_transaction() and transaction.get_connection().in_atomic_block:
        # The counter store failed inside this transaction: roll it back whole, so the
        # request holds nothing settlement would later correct.
        transaction.set_rollback(True)


def _reserve_alone(ctx: RequestContext, scope: KeyScope, route: Route) -> None:
    with transaction.atomic():  # the holds in one transaction, as in _load_scope
        _reserve(ctx, scope, route)


def _prompt_field(ctx: RequestContext) -> str | None:
    """Where the prompt DLP scans is: every field of the body, not only this one (dlp/fields.py)."""
    if ctx.endpoint in CHAT_ENDPOINTS and isinstance(ctx.body.get("messages"), list):
        return "messages"
    if ctx.endpoint == "embeddings" and ctx.body.get("input") is not None:
        return "input"
    return None


def _prescan(ctx: RequestContext, inspector: Inspector, field: str) -> None:
    """Scan the prompt in a worker thread, not on the event loop: a huge hostile prompt
    (RE2 is linear, but ~1 MB/s on the worst inputs) then stalls one request, not the worker.
    The verdict is applied in order, after the scope checks (`_inspect_messages`)."""
    try:
        # Bounded (dlp/budget.py): a hostile prompt spends its own request's time, no more.
        ctx.body, verdict = inspector.request(
            ctx.body, max_bytes=settings.SYNAPSE["DLP_MAX_SCAN_BYTES"], budget_ms=settings.SYNAPSE["DLP_TIME_BUDGET_MS"]
        )
    except ScanBudgetError as exc:
        ctx.prompt_unscanned = dlp_unscannable(exc, param=field)
        verdict = Verdict()
    ctx.prompt_scan = ctx.body[field], verdict


def _enforce_limits(ctx: RequestContext, upstream: dict[str, Any]) -> None:
    """Refuse what the limits reservation found (or, in monitor mode, record it) and clamp."""
    reservation = ctx.reservation
    if reservation is None:
        return
    if reservation.unavailable:
        ctx.enforce(limits_unavailable())
    for breach in reservation.breaches:
        ctx.enforce(limit_exceeded(breach))
    # The upstream is told to stop where the reservation does (teams.limits._completion_cap).
    upstream.update(reservation.clamps)


async def _authorise(ctx: RequestContext, raw_key: str, model: str) -> None:
    try:
        ctx.key, ctx.route = await run_db(_load_scope, raw_key, model, ctx)
        if ctx.scan_deferred:
            assert ctx.key is not None and ctx.route is not None and ctx.dlp is not None
            field = _prompt_field(ctx)
            assert field is not None
            # A large prompt waits for the worker's scan pool (synapse/scans.py), then the limits
            # are held in a hop of their own: a large prompt's request makes one hop more.
            await run_scan(_prescan, ctx, ctx.dlp, field)
            await run_db(_reserve_alone, ctx, ctx.key, ctx.route)
    except DatabaseError as exc:
        logger.error("database unavailable before the upstream call: %s", exc)
        # A connection that could not be had in the pool's timeout will not be had a moment
        # later for the audit row either: answer the 503 now rather than wait twice.
        ctx.database_unreachable = isinstance(exc, OperationalError)
        raise service_unavailable("reach its audit database") from exc
    if ctx.key is None:
        raise authentication_failed()


def _check_route(ctx: RequestContext, model: str) -> Route:
    route = ctx.route
    if route is None:
        raise model_not_allowed(model)
    assert ctx.key is not None
    # Checked at issuance too; checked again here because routing can change after it.
    if not may_reach(route.backend, sensitive=ctx.key.is_sensitive):
        ctx.route = None
        raise classification_violation(model)
    return route


# ── stages 2 and 5: DLP ─────────────────────────────────────────────────────────────────


def _judge(ctx: RequestContext, verdict: Verdict, direction: Direction, refusal: GatewayError) -> None:
    """Record what DLP found; refuse if it blocks (monitor mode records the refusal instead)."""
    ctx.dlp_findings.extend(
        DlpFinding(direction=direction, category=f.category, pattern=f.pattern, action=Action(f.action), count=f.count)
        for f in verdict.findings
    )
    if verdict.blocked:
        ctx.enforce(refusal)


def _unreadable(ctx: RequestContext, kinds: list[str], param: str) -> None:
    assert ctx.key is not None
    if kinds and ctx.key.is_sensitive and not settings.SYNAPSE["DLP_SENSITIVE_NON_TEXT"]:
        ctx.enforce(dlp_unreadable_content(kinds, param=param))


def _scanned(ctx: RequestContext) -> None:
    """Refuse a prompt DLP could not scan within its bounds, in every enforcement mode."""
    if ctx.prompt_unscanned is not None:
        raise ctx.prompt_unscanned


def _inspect_messages(ctx: RequestContext, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert ctx.prompt_scan is not None
    _scanned(ctx)
    _unreadable(ctx, non_text_parts(messages), "messages")
    messages, verdict = ctx.prompt_scan
    _judge(ctx, verdict, Direction.PROMPT, dlp_blocked(verdict.blocked))
    return messages


def _stream_verdict(ctx: RequestContext, guard: StreamFilter | None) -> GatewayError | None:
    """Record a stream's findings once it has ended; the refusal to send if it was blocked."""
    if guard is None:
        return None
    try:
        verdict = guard.verdict()
        _judge(ctx, verdict, Direction.RESPONSE, dlp_response_blocked(verdict.blocked))
    except GatewayError as exc:
        return exc
    return None


# ── stage 6: audit ──────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class _Settles:
    """What a request's audit row commits with: its limit settlement, and what its tries
    taught the circuit breaker (usually nothing)."""

    settlement: Settlement | None
    health: tuple[tuple[str, str, str], ...]


def _settle_with_rows(payloads: list[_Settles]) -> list[list[SpendLevel]]:
    """The companion write of a batch of audit rows (audit.group_commit), committed by itself,
    before or beside them: every settlement at once (counters in their lock order; usually one
    autocommitted statement), then the breaker's backends by name, so concurrent batches never
    wait on each other's rows.
    Each part is atomic, and a settlement already made is not made again (a retry after the
    breaker's part failed). Returns each request's budget levels."""
    settlements = [p.settlement for p in payloads if p.settlement is not None]
    levels = iter(limits_settle_many(settlements))
    if events := sorted(event for p in payloads for event in p.health):
        backend_health_settle(events=events)
    return [next(levels) if p.settlement is not None else [] for p in payloads]


def _settles(ctx: RequestContext) -> _Settles:
    settlement = None
    if ctx.reservation is not None:
        settlement = Settlement(
            ctx.reservation,
            prompt_tokens=ctx.prompt_tokens,
            completion_tokens=ctx.completion_tokens,
            cost=ctx.cost,
            reached_upstream=any(not a.outcome.startswith("skipped_") for a in ctx.attempts),
        )
    return _Settles(settlement, tuple((a.backend, a.health, a.outcome) for a in ctx.attempts if a.health))


def _row_values(ctx: RequestContext) -> dict[str, Any]:
    return request_values(request_record(ctx))


def _append_here(ctx: RequestContext, settles: _Settles) -> Written:
    return audit_append_with(values=_row_values(ctx), companion=_settle_with_rows, payload=settles)


def _append_opened(values: dict[str, Any]) -> Written:
    return audit_append_with(values=values)


async def _grouped(*, values: Callable[[], dict[str, Any]], companion: Companion | None = None, payload: Any = None) -> Written:
    """A row through the process's group commit: its batches written on this event loop where
    the database hops run on it (synapse/loop_db.py), else on the writer thread."""
    committer = group_committer()
    if on_loop():
        return await committer.write(values=values, companion=companion, payload=payload, run=run_db)
    return await asyncio.wrap_future(committer.submit(values=values, companion=companion, payload=payload))


async def _open_stream(ctx: RequestContext) -> None:
    """Commit a stream's opening row (`stream_opened`), before its first byte. Shielded, like
    the closing row: a client that leaves meanwhile gets its closing row written after it."""
    values = stream_opened_values(request_record(ctx))  # now: the client may leave and change ctx

    async def write() -> None:
        with audit_write_timer():  # an audit write like any other; not a request (no request metrics)
            if on_caller_thread() or not group_commit_enabled():
                written = await run_db(_append_opened, values)
            else:
                written = await _grouped(values=lambda: values)
        ctx.stream_opened_seq = written.seq

    ctx.stream_open_write = asyncio.ensure_future(write())
    await asyncio.shield(ctx.stream_open_write)


async def _write_row(ctx: RequestContext) -> None:
    """The request's one row, durable, with its settlement; then the anomaly rules, queued."""
    if ctx.stream_open_write is not None and not ctx.stream_open_write.done():
        # The closing row follows its opening row in the chain (whether or not that was written).
        await asyncio.gather(ctx.stream_open_write, return_exceptions=True)
    settles = _settles(ctx)
    # The span covers the wait for the group commit that holds the row.
    with audit_observed(ctx), stage_span("_write_row"):  # metrics + log line once the row exists
        if on_caller_thread() or not group_commit_enabled():
            # A caller that owns the transaction (a test, a management command) or SQLite.
            written = await run_db(_append_here, ctx, settles)
        else:
            # Nothing to settle (no limits held, no breaker news): no companion transaction.
            companion = _settle_with_rows if settles.settlement is not None or settles.health else None
            written = await _grouped(values=partial(_row_values, ctx), companion=companion, payload=settles)
    levels: list[SpendLevel] = written.result or []
    ctx.audited = True
    # After the row: the rules count audit rows, this one included.
    if on_caller_thread():
        await run_db(anomalies_observe, ctx, spend=levels)
    else:
        anomalies_submit(ctx, spend=levels)


async def _audit(ctx: RequestContext, *, disconnected: bool = False) -> bool:
    """Write the row; False if it could not be written (the caller must not serve content).

    Runs once per request: a second call (the client went away while the row was being
    written) waits for the first write rather than start another.
    """
    if ctx.database_unreachable:
        logger.error("audit row of %s not written: the database is unreachable", ctx.request_id)
        return False
    if ctx.audit_write is None:
        if disconnected:
            ctx.reject(**disconnect_verdict())  # the client left, or the worker cut it at shutdown
        ctx.audit_write = asyncio.ensure_future(_write_row(ctx))
    try:
        # Shielded: a client that leaves now must not stop the row being written.
        await asyncio.shield(ctx.audit_write)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("audit write failed for %s", ctx.request_id)
        return False
    return True


async def _reject(ctx: RequestContext, wire: Wire, exc: GatewayError) -> HttpResponseBase:
    ctx.reject(decision=exc.decision, status=exc.status, code=exc.code, message=exc.message)
    if not await _audit(ctx) and exc.status != 503:
        exc = service_unavailable("write its audit record")
    return wire.error_response(exc, request_id=ctx.request_id)


async def _guarded(ctx: RequestContext, wire: Wire, handler: Any, *args: Any) -> HttpResponseBase:
    """Run one endpoint; any refusal or failure becomes an audited OpenAI-shaped error."""
    try:
        response: HttpResponseBase = await handler(ctx, *args)
    except GatewayError as exc:
        response = await _reject(ctx, wire, exc)
    except asyncio.CancelledError:
        # The client went away before the answer was ready: the request still gets its row.
        await _audit(ctx, disconnected=True)
        raise
    except Exception:
        logger.exception("unhandled error in request %s", ctx.request_id)
        response = await _reject(ctx, wire, internal_error())
    if ctx.reservation is not None:
        # OpenAI's x-ratelimit-* headers on every answer to a limited key, refusals included.
        for name, value in ctx.reservation.headers().items():
            response[name] = value
    return response


# ── usage and cost ─────────────────────────────────────────────────────────────────────


def _record_usage(ctx: RequestContext, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    ctx.prompt_tokens = prompt if isinstance(prompt, int) else ctx.prompt_tokens
    ctx.completion_tokens = completion if isinstance(completion, int) else ctx.completion_tokens
    if ctx.route is not None:
        ctx.cost = (
            Decimal(ctx.prompt_tokens or 0) * ctx.route.input_price_per_mtok
            + Decimal(ctx.completion_tokens or 0) * ctx.route.output_price_per_mtok
        ) / _MILLION


def _backends(ctx: RequestContext, route: Route) -> Dispatcher:
    """The route's backends behind the adapter interface: retries, failover, every try recorded."""
    assert ctx.key is not None

    def on_attempt(record: AttemptRecord) -> None:
        backend, outcome, status, health = record.route.backend.name, record.outcome, record.status, record.health
        ctx.attempts.append(Attempt(backend=backend, outcome=outcome, latency_ms=record.latency_ms, status=status, health=health))
        if not record.skipped:
            ctx.upstream_ms = record.latency_ms

    def on_serve(serving: Route) -> None:
        ctx.route = serving  # a fallback's answer is priced and audited as that fallback's

    return dispatch(route, sensitive=ctx.key.is_sensitive, on_attempt=on_attempt, on_serve=on_serve)


def _upstream_error(ctx: RequestContext, exc: UpstreamError) -> GatewayError:
    if exc.status == 400:
        return GatewayError(
            status=400, message=exc.message, type="invalid_request_error", code=exc.code, decision=Decision.UPSTREAM_ERROR
        )
    headers = {"retry-after": str(int(exc.retry_after))} if exc.retry_after else None
    error = upstream_failed(exc.message, status=exc.status if exc.status in (429, 502, 503, 504) else 502, code=exc.code)
    error.headers = headers or {}
    return error


# ── endpoints ──────────────────────────────────────────────────────────────────────────

# The doors that speak chat inside (their bodies are canonical chat once translated).
CHAT_ENDPOINTS = frozenset({"chat.completions", "responses", "messages"})
# The ones whose content reaches a backend: scanned by DLP and counted by the limits.
GOVERNED_ENDPOINTS = CHAT_ENDPOINTS | {"embeddings"}


async def completions(ctx: RequestContext, raw_key: str, body: dict[str, Any] | GatewayError, wire: Wire) -> HttpResponseBase:
    """A chat-shaped request through any door (chat completions, Responses, Messages)."""
    return await _guarded(ctx, wire, _chat, raw_key, body, wire)


async def chat_completions(ctx: RequestContext, raw_key: str, body: dict[str, Any] | GatewayError) -> HttpResponseBase:
    return await completions(ctx, raw_key, body, CHAT)


async def embeddings(ctx: RequestContext, raw_key: str, body: dict[str, Any] | GatewayError) -> HttpResponseBase:
    return await _guarded(ctx, CHAT, _embeddings, raw_key, body)


async def count_tokens(ctx: RequestContext, raw_key: str, body: dict[str, Any] | GatewayError) -> HttpResponseBase:
    """What a Messages request would cost in input tokens, as the model would read it (bound prompt included)."""
    return await _guarded(ctx, MESSAGES, _count_tokens, raw_key, body)


async def list_models(ctx: RequestContext, raw_key: str) -> HttpResponseBase:
    return await _guarded(ctx, CHAT, _models, raw_key)


async def refuse(ctx: RequestContext, exc: GatewayError, wire: Wire = CHAT) -> HttpResponseBase:
    """A request refused before any layer ran (unknown route, oversized body): still audited."""
    return await _reject(ctx, wire, exc)


Body = dict[str, Any]
Canonical = Callable[[Body], Body]  # a door's translation into the canonical body


def _validated(
    ctx: RequestContext, body: Body | GatewayError, canonical: Canonical, validator: Any
) -> tuple[str, GatewayError | None]:
    """The canonical body and the requested model, or the error to answer with once the key
    is known (an invalid body from an unknown key is an authentication failure first)."""
    if isinstance(body, GatewayError):
        return "", body
    model = body.get("model")
    ctx.model_requested = model if isinstance(model, str) else ""
    try:
        ctx.body = canonical(body)
    except GatewayError as exc:
        return ctx.model_requested, exc
    model, error = first_error(validator, ctx.body)
    ctx.model_requested = model
    return model, error


async def _admit(ctx: RequestContext, raw_key: str, body: Body | GatewayError, canonical: Canonical, validator: Any) -> Route:
    """Every door's front half: parse, authenticate, scope the model. Returns the route."""
    model, error = _validated(ctx, body, canonical, validator)
    # An invalid body looks nothing up by its model (a NUL in it is not a database outage).
    await _authorise(ctx, raw_key, model if error is None else "")
    if error is not None:
        raise error
    route = _check_route(ctx, model)
    check_fields(ctx.body, embeddings=ctx.endpoint == "embeddings", extra=route.extra_fields())
    return route


async def _call(ctx: RequestContext, call: Callable[[Dispatcher, Body], Awaitable[Body]], route: Route, upstream: Body) -> Body:
    """Every door's back half for a whole answer: limits, the upstream call, usage."""
    # Limits were held in _load_scope; enforced here, after the scope and DLP checks.
    _enforce_limits(ctx, upstream)
    ctx.upstream_body = upstream
    try:
        result = await call(_backends(ctx, route), upstream)
    except UpstreamError as exc:
        raise _upstream_error(ctx, exc) from exc
    _record_usage(ctx, result.get("usage"))
    # Charged as reported (the provider bills it), but not served: the cap was sent.
    if (cap := _held_completion(ctx)) is not None and (ctx.completion_tokens or 0) > cap:
        raise upstream_over_reservation(ctx.completion_tokens or 0, cap)
    result["model"] = ctx.model_requested
    return result


def _held_completion(ctx: RequestContext) -> int | None:
    """The completion tokens the limits held and the upstream was told to stop at, when a
    limit depends on it (a token or budget hold, or the key's max_tokens ceiling)."""
    reservation = ctx.reservation
    if reservation is None or ctx.key is None:
        return None
    if reservation.token_holds or reservation.spend_holds or ctx.key.max_tokens is not None:
        return reservation.completion_cap
    return None


async def _served(ctx: RequestContext, answer: dict[str, Any]) -> HttpResponseBase:
    """The answer, only once its audit row is durable."""
    if not await _audit(ctx):
        raise service_unavailable("write its audit record")
    return JsonResponse(answer)


async def _chat(ctx: RequestContext, raw_key: str, body: dict[str, Any] | GatewayError, wire: Wire) -> HttpResponseBase:
    route = await _admit(ctx, raw_key, body, wire.to_chat, validate_chat)
    assert ctx.key is not None and isinstance(body, dict)
    ctx.stream = bool(ctx.body.get("stream"))
    ctx.callable_tools = tools_admit(ctx.key, ctx.body)

    # DLP before the bound prompt joins: that prompt was approved with the key.
    messages = bind_system_prompt(ctx.key.system_prompt, _inspect_messages(ctx, ctx.body["messages"]))
    upstream = {**ctx.body, "model": route.upstream_model, "messages": messages}

    if ctx.stream:
        _enforce_limits(ctx, upstream)
        client_options = ctx.body.get("stream_options") or {}
        ctx.include_usage = bool(client_options.get("include_usage"))
        # Usage is always requested upstream: limits and cost need it even if the client doesn't.
        upstream["stream_options"] = {**client_options, "include_usage": True}
        ctx.upstream_body = upstream
        encoder = wire.encoder(request=body, model=ctx.model_requested, request_id=ctx.request_id)
        return await _start_stream(ctx, _backends(ctx, route).chat_stream(upstream), encoder)

    result = await _call(ctx, lambda backends, payload: backends.chat(payload), route, upstream)
    if ctx.callable_tools is not None and (name := undeclared_call(result.get("choices"), ctx.callable_tools, streamed=False)):
        raise undeclared_tool_call(name)
    assert ctx.dlp is not None
    verdict = ctx.dlp.completion(result)
    _judge(ctx, verdict, Direction.RESPONSE, dlp_response_blocked(verdict.blocked))
    for choice in result.get("choices") or []:
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            ctx.response_text.append(message["content"])
    return await _served(ctx, wire.from_chat(result, request=body))


async def _embeddings(ctx: RequestContext, raw_key: str, body: dict[str, Any] | GatewayError) -> HttpResponseBase:
    route = await _admit(ctx, raw_key, body, _as_is, validate_embeddings)
    assert ctx.prompt_scan is not None
    _scanned(ctx)
    _unreadable(ctx, ["token ids"] if non_text_input(ctx.body["input"]) else [], "input")
    value, verdict = ctx.prompt_scan
    _judge(ctx, verdict, Direction.PROMPT, dlp_blocked(verdict.blocked, param="input"))
    upstream = {**ctx.body, "model": route.upstream_model, "input": value}
    result = await _call(ctx, lambda backends, payload: backends.embeddings(payload), route, upstream)
    return await _served(ctx, result)


async def _count_tokens(ctx: RequestContext, raw_key: str, body: dict[str, Any] | GatewayError) -> HttpResponseBase:
    # No upstream call and no tokens spent: no limits held, no DLP (nothing leaves the gateway).
    route = await _admit(ctx, raw_key, body, to_chat_for_count, validate_chat)
    assert ctx.key is not None
    messages = bind_system_prompt(ctx.key.system_prompt, ctx.body["messages"])
    counted = count_chat(messages, model=route.upstream_model, tools=ctx.body.get("tools"))
    ctx.prompt_tokens = counted.tokens
    return await _served(ctx, count_tokens_response(counted.tokens))


def _as_is(body: dict[str, Any]) -> dict[str, Any]:
    return body


async def _models(ctx: RequestContext, raw_key: str) -> HttpResponseBase:
    await _authorise(ctx, raw_key, "")
    assert ctx.key is not None
    names = await run_db(allowed_model_names, key_id=ctx.key.key_id)
    created = int(ctx.received_at.timestamp())
    data = [{"id": name, "object": "model", "created": created, "owned_by": "synapse"} for name in names]
    return await _served(ctx, {"object": "list", "data": data})


# ── streaming ──────────────────────────────────────────────────────────────────────────


async def _start_stream(
    ctx: RequestContext, chunks: AsyncGenerator[dict[str, Any], None], encoder: StreamEncoder
) -> HttpResponseBase:
    """Wait for the first chunk before answering, so a backend that fails up front gets a real
    HTTP error status instead of a 200 stream that dies; then commit the stream's opening row."""
    try:
        first: dict[str, Any] | None = await anext(chunks)
    except StopAsyncIteration:
        first = None
    except UpstreamError as exc:
        await chunks.aclose()
        raise _upstream_error(ctx, exc) from exc
    except BaseException:
        await chunks.aclose()
        raise
    # Audit before the first byte: nothing is sent (not even the status line) until the
    # stream's opening row is committed in the chain. If the worker dies mid-stream, that row
    # is what remains; `verify_audit` lists such streams as opened and never closed.
    try:
        await _open_stream(ctx)
    except BaseException as exc:
        await chunks.aclose()
        if not isinstance(exc, Exception):
            raise  # cancelled (the client left): _guarded writes the closing row
        logger.exception("stream-opened audit write failed for %s", ctx.request_id)
        # As in _authorise: a connection not had in the pool's timeout will not be had a moment
        # later for the refusal's row either.
        ctx.database_unreachable = isinstance(exc, OperationalError)
        raise service_unavailable("write its audit record") from exc
    response = StreamingHttpResponse(
        _relay(ctx, chunks, first, encoder),
        content_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no", "x-request-id": ctx.request_id},
    )
    return response


def _delta_texts(chunk: dict[str, Any]) -> list[str]:
    texts = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if isinstance(delta.get("content"), str):
            texts.append(delta["content"])
        for call in delta.get("tool_calls") or []:
            arguments = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
            if isinstance(arguments, str):
                texts.append(arguments)
    return texts


async def _relay(
    ctx: RequestContext, chunks: AsyncGenerator[dict[str, Any], None], first: dict[str, Any] | None, encoder: StreamEncoder
) -> AsyncIterator[bytes]:
    failed: GatewayError | None = None
    # Output DLP: each choice's text and each tool call's arguments pass a hold-back window.
    guard = ctx.dlp.stream(settings.SYNAPSE["DLP_STREAM_WINDOW"]) if ctx.dlp is not None else None
    last: dict[str, Any] = {}
    held = _held_completion(ctx)
    # Deltas are counted one by one, which can split differently from the whole answer: the
    # slack keeps a compliant upstream's last tokens from being cut.
    allowed, streamed = (held + held // 4 + 16 if held is not None else None), 0
    try:
        chunk = first
        while chunk is not None:
            if chunk.get("usage"):
                _record_usage(ctx, chunk["usage"])
                if held is not None and (ctx.completion_tokens or 0) > held:
                    failed = upstream_over_reservation(ctx.completion_tokens or 0, held)
                    break
            if allowed is not None and ctx.route is not None:
                streamed += sum(count_output(text, model=ctx.route.upstream_model) for text in _delta_texts(chunk))
                if streamed > allowed:
                    # The upstream ignored the cap it was sent: cut here, audited, rather than
                    # let it spend past what the limits held.
                    failed = upstream_over_reservation(streamed, held or 0)
                    break
            if ctx.callable_tools is not None and (
                name := undeclared_call(chunk.get("choices"), ctx.callable_tools, streamed=True)
            ):
                failed = undeclared_tool_call(name)
                break
            if guard is not None:
                guard.chunk(chunk)
                if guard.blocked:
                    break
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if isinstance(content, str):
                    ctx.response_text.append(content)
            last = chunk
            # One write per upstream chunk, whatever the door makes of it: a door that turns one
            # chunk into several events (Messages opens a block, then a delta) must not send them
            # as separate small writes, which delayed ACKs can hold back ~40 ms.
            if data := b"".join(encoder.chunk(chunk)):
                yield data
            chunk = await anext(chunks, None)
        if failed is None and guard is not None and (tail := guard.finish()) is not None:
            # Text an upstream left open (no finish_reason): released before the end.
            tail.update({"id": last.get("id"), "created": last.get("created"), "model": ctx.model_requested})
            ctx.response_text.extend(c["delta"].get("content") or "" for c in tail["choices"])
            if data := b"".join(encoder.chunk(tail)):
                yield data
    except UpstreamError as exc:
        failed = _upstream_error(ctx, exc)
    except (asyncio.CancelledError, GeneratorExit):
        # The client went away (Django cancels the task, or closes this generator while it is
        # parked at a yield): close the upstream, still leave the audit row, then stop.
        await chunks.aclose()
        _stream_verdict(ctx, guard)
        await _audit(ctx, disconnected=True)
        raise
    finally:
        await chunks.aclose()

    blocked = _stream_verdict(ctx, guard)
    failed = failed or blocked
    if failed is not None:
        ctx.reject(decision=failed.decision, status=failed.status, code=failed.code, message=failed.message)
    audited = await _audit(ctx)
    if failed is None and not audited:
        failed = service_unavailable("write its audit record")
    yield b"".join(encoder.error(failed) if failed is not None else encoder.finish())
