"""Teams and API keys: each key is one approved use case, bound at issuance and then sealed."""

from __future__ import annotations

import hashlib
from datetime import datetime, time
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.utils import timezone

from .periods import zone_named

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

KEY_PREFIX = "syn"


class Classification(models.TextChoices):
    SENSITIVE = "sensitive", "Sensitive (on-premises backends only)"
    NON_SENSITIVE = "non_sensitive", "Non-sensitive (cloud allowed)"


class Enforcement(models.TextChoices):
    ENFORCE = "enforce", "Enforce (refuse what breaches a policy)"
    MONITOR = "monitor", "Monitor (record and alert, let the request through)"


class BudgetPeriod(models.TextChoices):
    DAY = "day", "Day"
    WEEK = "week", "Week (from Monday)"
    MONTH = "month", "Calendar month"


class Team(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    display_name = models.CharField(max_length=200, blank=True)
    owner_email = models.EmailField(help_text="The person accountable for this team's use of AI.")
    created_at = models.DateTimeField(auto_now_add=True)
    # Team-wide ceilings over all its keys; each key's own limits apply as well.
    rpm = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute over all keys; empty = none.")
    tpm = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens per minute over all keys; empty = none.")
    budget = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, help_text="Spend ceiling per budget period (USD); empty = none."
    )
    budget_period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        help_text="IANA name, e.g. Europe/Berlin: budget periods and business hours. Empty: server time zone.",
    )
    business_hours_start = models.TimeField(default=time(8, 0))
    business_hours_end = models.TimeField(default=time(18, 0))
    business_days = models.CharField(max_length=7, default="12345", help_text="ISO weekdays, 1 = Monday … 7 = Sunday.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.display_name or self.name

    def zone(self) -> ZoneInfo:
        return zone_named(self.time_zone)


class ApiKey(models.Model):
    """The binding (team, prompt, models, classification, limits, budget, enforcement mode, tools) is
    immutable once `sealed`.

    Database triggers (migration 0002) refuse any change to the bound columns of a sealed
    key and to its model allowlist; only revocation and expiry may change. A new use case
    is a new key.
    """

    lookup_id = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    name = models.CharField(max_length=200, help_text="The approved use case, e.g. 'Claims summariser'.")
    purpose = models.TextField(blank=True)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="api_keys")
    system_prompt = models.TextField(help_text="Sent first on every request; the client's own system text follows it.")
    allowed_models = models.ManyToManyField("routing.Model", through="ApiKeyModel", related_name="api_keys")
    classification = models.CharField(max_length=16, choices=Classification.choices)
    rpm = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute; empty = unlimited.")
    tpm = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens per minute; empty = unlimited.")
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Ceiling on a request's max_tokens (larger values are clamped to it)."
    )
    max_messages = models.PositiveIntegerField(null=True, blank=True, help_text="Most messages one request may carry.")
    max_prompt_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Largest prompt one request may send.")
    max_concurrent = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most requests in flight at once (all workers and instances); empty = unlimited."
    )
    budget = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, help_text="Spend ceiling per team budget period (USD)."
    )
    enforcement = models.CharField(max_length=8, choices=Enforcement.choices, default=Enforcement.ENFORCE)
    # Comma-separated patterns (teams/tools.py); empty = no tool policy. A column rather than a
    # table: the sealing trigger then covers it like every other bound column.
    tools = models.TextField(
        blank=True,
        default="",
        help_text="Tool names or globs (server__tool), comma-separated; empty = no MCP tools, own /v1 tools allowed.",
    )
    requested_by = models.CharField(max_length=200, blank=True)
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    sealed = models.BooleanField(default=False, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    revoke_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({KEY_PREFIX}_{self.lookup_id}_…)"

    @property
    def prefix(self) -> str:
        return f"{KEY_PREFIX}_{self.lookup_id}_"

    def is_active(self, at: datetime | None = None) -> bool:
        at = at or timezone.now()
        if not self.sealed or self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > at

    @property
    def tool_patterns(self) -> tuple[str, ...]:
        return tuple(part for part in self.tools.split(",") if part)


class ApiKeyModel(models.Model):
    """One allowed model of a key; rows can only be added before the key is sealed."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT)
    model = models.ForeignKey("routing.Model", on_delete=models.PROTECT)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "model"], name="apikeymodel_unique")]
        verbose_name = "allowed model"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
