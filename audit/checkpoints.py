"""Checkpoints: the chain's head, signed, to be kept outside the database.

The hash chain proves that no row was changed or removed *relative to the rows after it*.
Someone who can rewrite the whole table (a database superuser) can recompute every hash from
the point they changed onwards, and delete rows from the end. A checkpoint stored elsewhere
(a SIEM, a WORM bucket, a ticket) pins the head at a moment: `verify_audit --checkpoint`
then proves the current log still contains exactly that row at that position.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from .chain import ChainHead
from .selectors import audit_chain_head

FORMAT = "synapse-audit-checkpoint/1"


class CheckpointError(Exception):
    """A checkpoint that cannot be trusted: unreadable, wrongly signed, or not delivered."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    format: str
    seq: int
    head: str
    created_at: str
    key_id: str
    signature: str = ""

    def signed_bytes(self) -> bytes:
        fields = {k: v for k, v in asdict(self).items() if k != "signature"}
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def pinned(self) -> ChainHead:
        """The chain position this checkpoint vouches for (what `audit_chain_verify` checks)."""
        return ChainHead(seq=self.seq, row_hash=self.head)


def _sign(checkpoint: Checkpoint, secret: bytes) -> str:
    return hmac.new(secret, checkpoint.signed_bytes(), hashlib.sha256).hexdigest()


def audit_checkpoint_create() -> Checkpoint:
    key_id, secret = settings.AUDIT_CHECKPOINT_KEY
    head = audit_chain_head()
    unsigned = Checkpoint(format=FORMAT, seq=head.seq, head=head.row_hash, created_at=timezone.now().isoformat(), key_id=key_id)
    return Checkpoint(**{**asdict(unsigned), "signature": _sign(unsigned, secret)})


def audit_checkpoint_load(text: str) -> Checkpoint:
    """Parse a checkpoint (the last non-empty line, so a file can collect them) and check its signature."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise CheckpointError("the checkpoint file is empty")
    try:
        data: Any = json.loads(lines[-1])
        checkpoint = Checkpoint(**data)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"not a checkpoint: {exc}") from exc
    # JSON gives any types: check the raw values (the dataclass's annotations promise, not check).
    if data["format"] != FORMAT or not isinstance(data["seq"], int) or not isinstance(data["head"], str):
        raise CheckpointError(f"not a {FORMAT} checkpoint")
    key_id, secret = settings.AUDIT_CHECKPOINT_KEY
    if checkpoint.key_id != key_id:
        raise CheckpointError(f"signed with key '{checkpoint.key_id}', but AUDIT_CHECKPOINT_KEY is '{key_id}'")
    if not hmac.compare_digest(checkpoint.signature, _sign(checkpoint, secret)):
        raise CheckpointError("the signature does not match: the checkpoint was altered or signed with another key")
    return checkpoint


def audit_checkpoint_post(checkpoint: Checkpoint, *, url: str, token: str = "") -> int:
    """Send the checkpoint to an external store; returns the HTTP status, raises unless 2xx."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(
            url, content=checkpoint.to_json(), headers={"content-type": "application/json", **headers}, timeout=10.0
        )
    except httpx.HTTPError as exc:
        raise CheckpointError(f"could not deliver the checkpoint to {url}: {exc}") from exc
    if not response.is_success:
        raise CheckpointError(f"{url} answered {response.status_code}: the checkpoint was not stored")
    return response.status_code
