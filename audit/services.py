"""Writes to the audit log. The pipeline calls `audit_record_request` once per /v1 request
(with a `RequestRecord` it builds from its context) — for a streamed answer after
`audit_record_stream_opened`, which it calls before the first byte; governance services call
`audit_governance_event` for every change they make.

Every write appends one chained row (`audit.chain`). On PostgreSQL that is one INSERT: the
trigger takes the chain lock, links the row to the head and holds the lock until commit. On
SQLite the chain step runs here, inside the write transaction that SQLite serialises anyway.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models, router, transaction
from django.utils import timezone

from .chain import CHAINED_FIELDS, COST_QUANTUM, GENESIS, chain_hash, content_digest
from .hashing import keyed_hash
from .models import AuditEvent, Decision, EventType

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

AUDITOR_GROUP = "auditor"


# ── the append ─────────────────────────────────────────────────────────────────────────


def _clean_json(value: Any) -> Any:
    """What the JSON column will give back: plain JSON types, no NUL characters."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_clean_json(item) for item in value]
    if isinstance(value, dict):
        return {key.replace("\x00", ""): _clean_json(item) for key, item in value.items()}
    return value


@functools.cache
def _column_kinds() -> dict[str, tuple[str, int | None]]:
    kinds: dict[str, tuple[str, int | None]] = {}
    for name in CHAINED_FIELDS:
        field = AuditEvent._meta.get_field(name)
        kind = next(
            (k for cls, k in _KINDS if isinstance(field, cls)),
            "other",
        )
        kinds[name] = (kind, getattr(field, "max_length", None))
    return kinds


_KINDS: tuple[tuple[type[models.Field[Any, Any]], str], ...] = (
    (models.JSONField, "json"),
    (models.GenericIPAddressField, "ip"),
    (models.CharField, "text"),
    (models.DecimalField, "decimal"),
    (models.FloatField, "float"),
)


@functools.lru_cache(maxsize=4096)
def _normal_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None  # e.g. a unix-socket peer: no address to record


def normalise_values(values: dict[str, Any]) -> dict[str, Any]:
    """Coerce values to exactly what the database stores, so the digest computed now is the
    digest `verify_audit` recomputes from the stored row."""
    unknown = set(values) - set(CHAINED_FIELDS)
    if unknown:
        raise ValueError(f"not audit columns: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for name, (kind, max_length) in _column_kinds().items():
        if name in values:
            value = values[name]
        else:
            field = AuditEvent._meta.get_field(name)
            assert isinstance(field, models.Field)  # chained fields are columns, never reverse relations
            value = field.get_default()
        if value is None:
            out[name] = None
        elif kind == "json":
            text = json.dumps(value, cls=DjangoJSONEncoder)
            out[name] = _clean_json(json.loads(text)) if "\\u0000" in text else json.loads(text)
        elif kind == "ip":
            out[name] = _normal_ip(str(value))
        elif kind == "text":
            # PostgreSQL text cannot hold NUL; over-long client input (a model name) is cut, not refused.
            out[name] = str(value).replace("\x00", "")[:max_length]
        elif kind == "decimal":
            out[name] = Decimal(value).quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)
        elif kind == "float":
            out[name] = float(value)
        else:
            out[name] = value
    return out


def audit_event_append(*, values: dict[str, Any]) -> AuditEvent:
    """Append one row to the chain; raises if it cannot be written durably."""
    row = normalise_values(values)
    digest = content_digest(row)
    alias = router.db_for_write(AuditEvent)
    if connections[alias].vendor == "postgresql":
        # One statement: the trigger assigns seq and prev_hash and chains the digest.
        return AuditEvent.objects.using(alias).create(**row, row_hash=digest)
    # SQLite: the write transaction (BEGIN IMMEDIATE) holds the database's single write lock,
    # so no other writer can read the same head; the insert trigger checks the link anyway.
    with transaction.atomic(using=alias):
        head = AuditEvent.objects.using(alias).order_by("-seq").values_list("seq", "row_hash").first()
        seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS)
        return AuditEvent.objects.using(alias).create(
            **row, seq=seq, prev_hash=prev_hash, row_hash=chain_hash(prev_hash=prev_hash, seq=seq, digest=digest)
        )


@dataclass(frozen=True, slots=True)
class FindingRecord:
    """What one DLP rule did to a request; never the matched value."""

    direction: str  # "prompt" | "response"
    category: str
    pattern: str
    action: str  # "block" | "redact" | "alert"
    count: int = 1


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call to one backend (failover can make several per request)."""

    backend: str
    outcome: str
    latency_ms: float
    status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRecord:
    """One /v1 request as its audit row records it: who, what, what each layer decided.

    The pipeline builds it (`synapse.audit_record`). `prompt` and `response` are the plain
    text, passed in only to be hashed here under AUDIT_HASH_KEY; the row never holds them.
    """

    request_id: str
    occurred_at: datetime
    endpoint: str
    model: str = ""
    status: int
    decision: Decision
    error_code: str = ""
    error_message: str = ""  # recorded with the request's method and path when set
    method: str = ""
    path: str = ""
    stream: bool = False
    team_id: int | None = None
    team_name: str = ""
    key_id: int | None = None
    key_name: str = ""
    approved_by: str = ""
    classification: str = ""
    backend: str = ""
    dlp: tuple[FindingRecord, ...] = ()
    attempts: tuple[CallRecord, ...] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: Decimal | None = None
    latency_ms: float = 0.0
    upstream_latency_ms: float | None = None
    client_ip: str = ""
    user_agent: str = ""
    prompt: str = field(default="", repr=False)
    response: str = field(default="", repr=False)
    stream_opened_seq: int | None = None  # a stream's closing row: the seq of its `stream_opened` row


def audit_record_request(*, record: RequestRecord) -> AuditEvent:
    """Write the one row for a finished (or rejected) /v1 request; raises if it cannot."""
    return audit_event_append(values=request_values(record))


def audit_record_stream_opened(*, record: RequestRecord) -> AuditEvent:
    """Write a streamed answer's opening row, before its first byte; raises if it cannot.

    Who asked for what, the prompt's keyed hash and what was decided up to now (`allowed`, or
    what monitor mode noted), `latency_ms` being the time to the upstream's first chunk. No
    answer, usage or cost: those are in the request's `request` row, written when the stream
    ends, whichever way it ends. A `stream_opened` row with no `request` row of the same
    request_id is a stream whose worker died (`verify_audit` lists them).
    """
    return audit_event_append(values=stream_opened_values(record))


def stream_opened_values(record: RequestRecord) -> dict[str, Any]:
    """The audit columns of a stream's opening row (`audit_record_stream_opened`)."""
    values = request_values(record)
    values.update(
        {"event_type": EventType.STREAM_OPENED, "response_hmac": "", "completion_tokens": None, "cost": None, "stream": True}
    )
    return values


def request_values(record: RequestRecord) -> dict[str, Any]:
    """The audit columns of a request — hashes, not text."""
    key_id, secret = settings.AUDIT_HASH_KEY
    r = record
    return {
        "occurred_at": r.occurred_at,
        "event_type": EventType.REQUEST,
        "request_id": r.request_id,
        "team_id": r.team_id,
        "team_name": r.team_name,
        "key_id": r.key_id,
        "key_name": r.key_name,
        "approved_by": r.approved_by,
        "classification": r.classification,
        "endpoint": r.endpoint,
        "model": r.model,
        "backend": r.backend,
        "status": r.status,
        "decision": r.decision,
        "error_code": r.error_code,
        "stream": r.stream,
        "dlp": [
            {"direction": f.direction, "category": f.category, "pattern": f.pattern, "action": f.action, "count": f.count}
            for f in r.dlp
        ],
        "attempts": [
            {"backend": a.backend, "outcome": a.outcome, "latency_ms": round(a.latency_ms, 3), "status": a.status}
            for a in r.attempts
        ],
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cost": r.cost,
        "latency_ms": round(r.latency_ms, 3),
        "upstream_latency_ms": round(r.upstream_latency_ms, 3) if r.upstream_latency_ms is not None else None,
        "client_ip": r.client_ip or None,
        "user_agent": r.user_agent,
        "prompt_hmac": keyed_hash(r.prompt, secret=secret) if r.prompt else "",
        "response_hmac": keyed_hash(r.response, secret=secret) if r.response else "",
        "hash_key_id": key_id,
        "detail": _request_detail(r),
    }


def _request_detail(r: RequestRecord) -> dict[str, Any]:
    detail: dict[str, Any] = {"path": r.path[:200], "method": r.method, "error": r.error_message[:500]} if r.error_message else {}
    if r.stream_opened_seq is not None:
        detail["stream_opened_seq"] = r.stream_opened_seq
    return detail


def audit_record_mcp(
    *, record: RequestRecord, rpc_method: str, server: str = "", tool: str = "", arguments: Any = None, result_text: str = ""
) -> AuditEvent:
    """Write the one row of an /mcp request; a `tools/call` is a `tool_call` row.

    The keyed hashes cover the arguments as the client sent them (canonical JSON) and the
    result text as the client got it, like a /v1 row's prompt and answer.
    """
    key_id, secret = settings.AUDIT_HASH_KEY
    values = request_values(record)
    arguments_text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False) if arguments else ""
    detail = {**values["detail"], "rpc_method": rpc_method[:100]}
    if rpc_method == "tools/call":
        detail.update({"server": server, "tool": tool})
    values.update(
        {
            "event_type": EventType.TOOL_CALL if rpc_method == "tools/call" else EventType.REQUEST,
            "backend": server,
            "prompt_hmac": keyed_hash(arguments_text, secret=secret) if arguments_text else "",
            "response_hmac": keyed_hash(result_text, secret=secret) if result_text else "",
            "hash_key_id": key_id,
            "detail": detail,
        }
    )
    return audit_event_append(values=values)


def audit_governance_event(
    *,
    event_type: EventType,
    actor: AbstractBaseUser | None = None,
    actor_name: str = "",
    team: Any = None,
    api_key: Any = None,
    detail: dict[str, Any] | None = None,
    client_ip: str | None = None,
    user_agent: str = "",
) -> AuditEvent:
    """Record a change to governance state (keys, routing, policies, limits, admin sessions).

    Called inside the service's transaction, so the change and its record commit together.
    An undeclared event type raises (ValueError): the console could neither name nor filter it.
    """
    return audit_event_append(
        values={
            "occurred_at": timezone.now(),
            "event_type": EventType(event_type),
            "actor": actor.get_username() if actor is not None else actor_name,
            "team_id": team.pk if team is not None else None,
            "team_name": team.name if team is not None else "",
            "key_id": api_key.pk if api_key is not None else None,
            "key_name": api_key.name if api_key is not None else "",
            # Who approved the key, on every row about it (issuance, revocation, expiry).
            "approved_by": _approver_name(api_key),
            "classification": api_key.classification if api_key is not None else "",
            "client_ip": client_ip or None,
            "user_agent": user_agent,
            "detail": detail or {},
        }
    )


def _approver_name(api_key: Any) -> str:
    approver = getattr(api_key, "approved_by", None) if api_key is not None else None
    return approver.get_username() if approver is not None else ""


# ── the auditor role ───────────────────────────────────────────────────────────────────


def auditor_group_ensure() -> Group:
    """The "auditor" group: may view audit events in the console, nothing else."""
    group, _ = Group.objects.get_or_create(name=AUDITOR_GROUP)
    group.permissions.set(Permission.objects.filter(content_type__app_label="audit", codename="view_auditevent"))
    return group
