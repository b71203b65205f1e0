"""Reads of the audit log: the chain's head, its verification, exports and keyed-hash matches.

Everything that walks the table pages through it by `seq` (keyset pagination), so a million
rows cost a million rows' work and a constant amount of memory, with no long transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from .chain import CHAINED_FIELDS, GENESIS, ChainHead, chain_hash, content_digest
from .hashing import keyed_hash
from .models import AuditEvent, EventType

EXPORT_FIELDS: tuple[str, ...] = ("id", "seq", *CHAINED_FIELDS, "prev_hash", "row_hash")


@dataclass(frozen=True, slots=True)
class ChainFailure:
    seq: int
    id: int | None
    label: str  # event type and request id, or empty when the row is missing
    reason: str

    def line(self) -> str:
        where = f"seq {self.seq}" + (f" (id {self.id}, {self.label})" if self.id is not None else "")
        return f"FAILED at {where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ChainReport:
    events: int
    head: ChainHead
    failure: ChainFailure | None
    checkpoint_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def line(self) -> str:
        if self.failure is not None:
            return self.failure.line()
        extends = f", extends checkpoint at seq {self.checkpoint_seq}" if self.checkpoint_seq is not None else ""
        return f"ok: {self.events} events, head {self.head.row_hash}{extends}"


def audit_chain_head() -> ChainHead:
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "row_hash").first()
    return ChainHead(seq=head[0], row_hash=head[1]) if head else ChainHead(seq=0, row_hash=GENESIS)


def audit_chain_verify(*, checkpoint: ChainHead | None = None, batch_size: int = 5000) -> ChainReport:
    """Walk the chain from the first row to the head as it was when the walk began, recompute
    every hash, and stop at the first row that fails; with `checkpoint` (a head pinned earlier,
    `Checkpoint.pinned()`), also prove the log still holds exactly that row at that position."""
    end = audit_chain_head()
    columns = ("id", "seq", "prev_hash", "row_hash", "event_type", "request_id", *CHAINED_FIELDS)
    expected_seq, expected_prev, last_seq, events = 1, GENESIS, 0, 0

    def fail(row: tuple[Any, ...], reason: str) -> ChainReport:
        label = f"{row[4]} {row[5]}".strip()
        failure = ChainFailure(seq=row[1], id=row[0], label=label, reason=reason)
        return ChainReport(events=events, head=end, failure=failure)

    while True:
        page = list(
            AuditEvent.objects.filter(seq__gt=last_seq, seq__lte=end.seq).order_by("seq").values_list(*columns)[:batch_size]
        )
        if not page:
            break
        for row in page:
            seq, prev_hash, row_hash = row[1:4]
            if seq != expected_seq:
                if seq > expected_seq:
                    missing = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq}–{seq - 1}"
                    return fail(row, f"the row(s) before it ({missing}) are missing: deleted from the log")
                return fail(row, f"seq out of order (expected {expected_seq}): the row was not written by the chain")
            if prev_hash != expected_prev:
                return fail(
                    row,
                    f"prev_hash does not match the row_hash of seq {seq - 1}: that row was rewritten or replaced"
                    if seq > 1
                    else "the first row does not start from the genesis hash",
                )
            digest = content_digest(dict(zip(CHAINED_FIELDS, row[6:], strict=True)))
            if chain_hash(prev_hash=prev_hash, seq=seq, digest=digest) != row_hash:
                return fail(row, "its content does not match its row_hash: the row was altered after it was written")
            if checkpoint is not None and seq == checkpoint.seq and row_hash != checkpoint.row_hash:
                return fail(
                    row,
                    f"its row_hash differs from the checkpoint's ({checkpoint.row_hash[:16]}…): "
                    "the log was rewritten since the checkpoint was taken",
                )
            expected_seq, expected_prev, last_seq, events = seq + 1, row_hash, seq, events + 1
    if checkpoint is not None and last_seq < checkpoint.seq:
        failure = ChainFailure(
            seq=last_seq + 1,
            id=None,
            label="",
            reason=f"the log ends at seq {last_seq} but the checkpoint covers seq {checkpoint.seq}: rows were removed",
        )
        return ChainReport(events=events, head=end, failure=failure)
    return ChainReport(events=events, head=end, failure=None, checkpoint_seq=checkpoint.seq if checkpoint else None)


@dataclass(frozen=True, slots=True)
class UnclosedStream:
    request_id: str
    seq: int
    occurred_at: datetime


def audit_stream_rows_unclosed(rows: QuerySet[AuditEvent] | None = None) -> QuerySet[AuditEvent]:
    """The `stream_opened` rows (of `rows`, default all) with no closing `request` row."""
    opened = (AuditEvent.objects.all() if rows is None else rows).filter(event_type=EventType.STREAM_OPENED)
    return opened.filter(~Exists(_closing_row()))


def _closing_row() -> QuerySet[AuditEvent]:
    """The `request` row of the outer row's request id (a subquery for `Exists`)."""
    return AuditEvent.objects.filter(event_type=EventType.REQUEST, request_id=OuterRef("request_id"))


def audit_streams_unclosed(*, up_to_seq: int | None = None) -> list[UnclosedStream]:
    """Streams whose opening row (`stream_opened`) has no closing `request` row: their worker died
    mid-stream (kill -9, out of memory, power) — or they are still running. Oldest first.

    One query: each opening row probes the request_id index for its closing row."""
    rows = audit_stream_rows_unclosed()
    if up_to_seq is not None:
        rows = rows.filter(seq__lte=up_to_seq)
    return [
        UnclosedStream(request_id=request_id, seq=seq, occurred_at=occurred_at)
        for request_id, seq, occurred_at in rows.order_by("seq").values_list("request_id", "seq", "occurred_at")
    ]


def audit_event_list(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    batch_size: int = 2000,
    rows: QuerySet[AuditEvent] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every column of every row with `since <= occurred_at < until`, in chain order, streamed.

    `rows` narrows it to a filtered queryset (the console's current view)."""
    rows = (AuditEvent.objects.all() if rows is None else rows).order_by()
    if since is not None:
        rows = rows.filter(occurred_at__gte=since)
    if until is not None:
        rows = rows.filter(occurred_at__lt=until)
    last_seq = 0
    while True:
        page = list(rows.filter(seq__gt=last_seq).order_by("seq").values(*EXPORT_FIELDS)[:batch_size])
        if not page:
            return
        yield from page
        last_seq = page[-1]["seq"]


@dataclass(frozen=True, slots=True)
class AuditMatch:
    event: AuditEvent
    matched: str  # "prompt" | "response"


def audit_event_match(*, text: str, keys: list[tuple[str, bytes]], limit: int = 1000) -> list[AuditMatch]:
    """Rows whose keyed prompt or response hash equals this text's, under any of the keys."""
    condition = Q(pk__in=[])
    digests: dict[tuple[str, str], str] = {}
    for key_id, secret in keys:
        digest = keyed_hash(text, secret=secret)
        digests[(key_id, digest)] = digest
        condition |= Q(hash_key_id=key_id) & (Q(prompt_hmac=digest) | Q(response_hmac=digest))
    # One match per request: a stream's opening row only when it is all there is (never closed).
    closed_opening = Q(event_type=EventType.STREAM_OPENED) & Exists(_closing_row())
    matches = []
    for event in AuditEvent.objects.filter(condition).exclude(closed_opening).order_by("seq")[:limit]:
        matched = "prompt" if (event.hash_key_id, event.prompt_hmac) in digests else "response"
        matches.append(AuditMatch(event=event, matched=matched))
    return matches


@dataclass(frozen=True, slots=True)
class TopEntry:
    label: str
    count: int
    key_id: int | None = None


def audit_top_keys(*, since: datetime, limit: int = 5) -> list[TopEntry]:
    """The keys with the most /v1 requests since `since` (one grouped query on the indexed columns)."""
    from django.db.models import Count

    rows = (
        AuditEvent.objects.filter(event_type="request", occurred_at__gte=since, key_id__isnull=False)
        .values("key_id", "team_name", "key_name")
        .annotate(n=Count("id"))
        .order_by("-n")[:limit]
    )
    return [TopEntry(label=f"{r['team_name']} · {r['key_name']}", count=r["n"], key_id=r["key_id"]) for r in rows]


def audit_top_dlp_categories(*, since: datetime, limit: int = 5, scan: int = 20_000) -> list[TopEntry]:
    """The DLP categories found most often since `since`, counted over the latest `scan` rows with
    findings (a bound on the dashboard's cost: findings are a JSON list, not an indexed column)."""
    from collections import Counter

    counts: Counter[str] = Counter()
    rows = (
        AuditEvent.objects.filter(event_type="request", occurred_at__gte=since)
        .exclude(dlp=[])
        .order_by("-seq")
        .values_list("dlp", flat=True)[:scan]
    )
    for findings in rows:
        for finding in findings or []:
            counts[str(finding.get("category", "?"))] += int(finding.get("count") or 1)
    return [TopEntry(label=category, count=n) for category, n in counts.most_common(limit)]
