"""Webhook delivery from the outbox: signed, retried with exponential backoff, at least once.

Signature header (verify it with `webhook_verify`, or in any language):

    Synapse-Signature: t=<unix seconds>,v1=<hex HMAC-SHA-256(secret, "<t>." + raw body)>

Signing the timestamp with the body lets a receiver refuse replays older than a few minutes.
`Synapse-Delivery` carries the delivery's id: the same id on a retry, so a receiver that
stores ids handles a redelivery (a crash after sending, before recording it) exactly once.

Several drainers may run at once (each gateway worker, `manage.py deliver_webhooks`): a
delivery is claimed with one conditional UPDATE (a lease) before it is sent, so two drainers
never send it at the same time, on PostgreSQL or SQLite alike.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import httpx
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .models import DeliveryStatus, WebhookDelivery

logger = logging.getLogger("synapse.webhooks")

LEASE = timedelta(seconds=60)
SIGNATURE_HEADER = "Synapse-Signature"


def webhook_sign(*, secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def webhook_verify(*, secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does: recompute the MAC and refuse stale timestamps."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = webhook_sign(secret=secret, timestamp=timestamp, body=body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff(attempts: int) -> timedelta:
    """Delay before try `attempts + 1`: base × 2^(attempts−1), capped at an hour."""
    base = settings.SYNAPSE["WEBHOOK_BACKOFF_SECONDS"]
    return timedelta(seconds=min(3600.0, base * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class DrainResult:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def sent(self) -> int:
        return self.delivered + self.retrying + self.failed


def _claim(delivery_id: UUID, now: datetime) -> bool:
    free = Q(locked_until__isnull=True) | Q(locked_until__lt=now)
    claimed = WebhookDelivery.objects.filter(free, pk=delivery_id, status=DeliveryStatus.PENDING).update(locked_until=now + LEASE)
    return claimed == 1


def webhook_deliveries_drain(*, now: datetime | None = None, limit: int = 100, client: httpx.Client | None = None) -> DrainResult:
    """Send every due delivery once; returns what happened. Safe to run from many processes."""
    now = now or timezone.now()
    # A deactivated endpoint's deliveries wait (pending) rather than go to a URL someone switched off.
    due = list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now, endpoint__is_active=True)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    if not due:
        # Every worker polls every few seconds; a client loads the CA bundle (~30 ms of CPU,
        # holding the GIL while the worker's requests wait), so none is made for nothing.
        return DrainResult(**counts)
    own_client = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)
    try:
        for delivery_id in due:
            if not _claim(delivery_id, now):
                continue  # another drainer has it
            delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
            counts[_send(http, delivery, now)] += 1
    finally:
        if own_client:
            http.close()
    return DrainResult(**counts)


def _send(http: httpx.Client, delivery: WebhookDelivery, now: datetime) -> str:
    endpoint = delivery.endpoint
    body = json.dumps({"id": str(delivery.pk), **delivery.payload}, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "content-type": "application/json",
        "user-agent": "Synapse-Webhooks/1",
        "synapse-delivery": str(delivery.pk),
        "synapse-event": str(delivery.payload.get("type", "alert.fired")),
        SIGNATURE_HEADER.lower(): webhook_sign(secret=endpoint.secret, timestamp=int(time.time()), body=body),
    }
    status: int | None = None
    error = ""
    try:
        response = http.post(endpoint.url, content=body, headers=headers)
        status = response.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}: {response.text[:200]}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    delivery.attempts += 1
    delivery.last_status = status
    delivery.last_error = error[:500]
    delivery.locked_until = None
    if not error:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = timezone.now()
        outcome = "delivered"
    elif delivery.attempts >= settings.SYNAPSE["WEBHOOK_MAX_ATTEMPTS"]:
        delivery.status = DeliveryStatus.FAILED
        outcome = "failed"
        logger.error("webhook delivery %s to %s failed for good: %s", delivery.pk, endpoint.url, error)
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts)
        outcome = "retrying"
        logger.warning("webhook delivery %s to %s failed (try %s): %s", delivery.pk, endpoint.url, delivery.attempts, error)
    delivery.save(
        update_fields=["attempts", "last_status", "last_error", "locked_until", "status", "delivered_at", "next_attempt_at"]
    )
    return outcome
