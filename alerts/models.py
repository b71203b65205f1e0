"""Anomaly rules, the alerts they raise, and the webhook outbox that delivers them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class AlertKind(models.TextChoices):
    USAGE_SPIKE = "usage_spike", "Usage spike"
    DLP_BLOCKS = "dlp_blocks", "Repeated DLP blocks"
    OFF_HOURS = "off_hours", "Off-hours burst"
    BUDGET_THRESHOLD = "budget_threshold", "Budget threshold"
    AUTH_FAILURES = "auth_failures", "Repeated authentication failures"
    LIMIT_BREACH = "limit_breach", "Rate limit or budget breach"
    TOOL_REFUSALS = "tool_refusals", "Repeated tool-call refusals"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


# kind: (threshold, window minutes, factor, baseline minutes, cooldown minutes, severity).
# Migration 0002 seeds these rows; a kind without a row runs with these settings.
DEFAULT_RULES: dict[str, tuple[int, int, float, int, int, str]] = {
    "usage_spike": (20, 5, 5.0, 60, 60, "warning"),
    "dlp_blocks": (5, 10, 1.0, 0, 30, "warning"),
    "off_hours": (20, 60, 1.0, 0, 120, "warning"),
    "budget_threshold": (1, 0, 1.0, 0, 0, "warning"),
    "auth_failures": (10, 5, 1.0, 0, 30, "critical"),
    "limit_breach": (1, 0, 1.0, 0, 30, "info"),
    "tool_refusals": (5, 10, 1.0, 0, 30, "warning"),
}


class AnomalyRule(models.Model):
    """One rule's settings; one row per kind, seeded by migration 0002, edited in the console."""

    kind = models.CharField(max_length=32, choices=AlertKind.choices, unique=True)
    enabled = models.BooleanField(default=True)
    threshold = models.PositiveIntegerField(
        help_text="Events that make an incident (spike: the minimum requests in the window; budget: unused)."
    )
    window_minutes = models.PositiveIntegerField(default=10, help_text="How far back events are counted.")
    factor = models.FloatField(default=5.0, help_text="Spike only: how many times the trailing baseline is 'far above'.")
    baseline_minutes = models.PositiveIntegerField(default=60, help_text="Spike only: the trailing baseline's length.")
    cooldown_minutes = models.PositiveIntegerField(default=60, help_text="After an alert, the same incident stays silent.")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind"]

    def __str__(self) -> str:
        return self.get_kind_display()

    @classmethod
    def default(cls, kind: str) -> AnomalyRule:
        threshold, window, factor, baseline, cooldown, severity = DEFAULT_RULES[kind]
        return cls(
            kind=kind,
            threshold=threshold,
            window_minutes=window,
            factor=factor,
            baseline_minutes=baseline,
            cooldown_minutes=cooldown,
            severity=severity,
        )


class Alert(models.Model):
    kind = models.CharField(max_length=32, choices=AlertKind.choices, db_index=True)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    fired_at = models.DateTimeField(db_index=True)
    title = models.CharField(max_length=300)
    subject = models.CharField(max_length=200, help_text="What the alert is about: a key, a team, an IP address.")
    team_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    key_id = models.BigIntegerField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    # Set for alerts that may fire only once ever (a budget threshold in one period).
    dedupe_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    acknowledge_note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-fired_at"]

    def __str__(self) -> str:
        return self.title

    @property
    def is_acknowledged(self) -> bool:
        return self.acknowledged_at is not None


class WebhookEndpoint(models.Model):
    name = models.CharField(max_length=200)
    url = models.URLField(max_length=500)
    # Needed in clear to sign; shown once in the console and never sent anywhere.
    secret = models.CharField(max_length=100, editable=False)
    kinds = models.JSONField(default=list, blank=True, help_text="Alert kinds to receive; empty = all.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.name

    def wants(self, kind: str) -> bool:
        return self.is_active and (not self.kinds or kind in self.kinds)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookDelivery(models.Model):
    """One alert to one endpoint: the outbox row, created in the alert's own transaction."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries")
    alert = models.ForeignKey(Alert, on_delete=models.PROTECT, related_name="deliveries")
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    locked_until = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.alert_id} → {self.endpoint_id} ({self.status})"
