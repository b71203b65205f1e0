"""The hash chain's format: which columns are covered, how a row is serialised, how rows link.

    digest   = SHA-256(canonical serialisation of the row's chained columns)
    row_hash = SHA-256(prev_hash ‖ ":" ‖ seq ‖ ":" ‖ digest)

The writer computes `digest` (serialising in Python keeps one definition for PostgreSQL and
SQLite, and for the verifier); the chain step runs where writers are serialised: the
PostgreSQL trigger under its advisory lock, or Python inside SQLite's write lock.

This is a storage format. Changing anything here makes every existing row fail verification;
a migration imports it to chain rows written before the chain existed.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

GENESIS = "0" * 64
COST_QUANTUM = Decimal("0.00000001")  # AuditEvent.cost has 8 decimal places

# Every column but id and the chain's own three. A column added later must be nullable and
# appended here: null values are left out of the serialisation, so older rows hash as before.
CHAINED_FIELDS: tuple[str, ...] = (
    "occurred_at",
    "event_type",
    "request_id",
    "actor",
    "team_id",
    "team_name",
    "key_id",
    "key_name",
    "approved_by",
    "classification",
    "endpoint",
    "model",
    "backend",
    "status",
    "decision",
    "error_code",
    "stream",
    "dlp",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "latency_ms",
    "upstream_latency_ms",
    "client_ip",
    "user_agent",
    "prompt_hmac",
    "response_hmac",
    "hash_key_id",
    "detail",
)


@functools.lru_cache(maxsize=4096)
def _canonical_ip(value: str) -> str:
    # PostgreSQL's inet prints some addresses its own way (IPv4-mapped IPv6); the exploded form
    # is the same whichever side produced the string. Cached: clients repeat their addresses.
    return ipaddress.ip_address(value).exploded


def _canonical_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical_decimal(value: Decimal) -> str:
    return format(value.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP), "f")


# The only columns whose Python value is not already plain JSON; everything else passes through.
_SPECIAL: dict[str, Callable[[Any], str]] = {
    "occurred_at": _canonical_time,
    "cost": _canonical_decimal,
    "client_ip": _canonical_ip,
}


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical(values: Mapping[str, Any]) -> bytes:
    """The row's chained columns as compact, key-sorted JSON (nulls omitted), UTF-8."""
    document = {name: value for name in CHAINED_FIELDS if (value := values.get(name)) is not None}
    for name, convert in _SPECIAL.items():
        if name in document:
            document[name] = convert(document[name])
    return _ENCODER.encode(document).encode("utf-8")


def content_digest(values: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(values)).hexdigest()


def chain_hash(*, prev_hash: str, seq: int, digest: str) -> str:
    # Same bytes as the PostgreSQL trigger: prev_hash || ':' || seq || ':' || digest.
    return hashlib.sha256(f"{prev_hash}:{seq}:{digest}".encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainHead:
    """A position in the chain and its row_hash: the head read now, or one a checkpoint pinned."""

    seq: int
    row_hash: str
