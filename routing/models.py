"""Where requests may go: backends (an endpoint + a location) and the models they serve."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.core.validators import RegexValidator
from django.db import models

from .adapters import BackendConfig


class Location(models.TextChoices):
    ON_PREM = "on_prem", "On-premises"
    CLOUD = "cloud", "Cloud"


class BackendKind(models.TextChoices):
    MOCK = "mock", "Built-in mock"
    OPENAI = "openai", "OpenAI"
    AZURE_OPENAI = "azure_openai", "Azure OpenAI"
    VLLM = "vllm", "vLLM"
    OLLAMA = "ollama", "Ollama"
    ANTHROPIC = "anthropic", "Anthropic"
    GEMINI = "gemini", "Google Gemini"
    OPENAI_RESPONSES = "openai_responses", "OpenAI (Responses API)"
    AZURE_OPENAI_RESPONSES = "azure_openai_responses", "Azure OpenAI (Responses API)"


class Backend(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=32, choices=BackendKind.choices)
    base_url = models.URLField(max_length=500, blank=True)
    # The name of an environment variable, never the secret: the database must not hold it.
    api_key_env = models.CharField(max_length=128, blank=True)
    location = models.CharField(max_length=16, choices=Location.choices)
    timeout_seconds = models.FloatField(
        null=True, blank=True, help_text="Whole call, stream included. Empty: SYNAPSE_UPSTREAM_TIMEOUT."
    )
    connect_timeout_seconds = models.FloatField(null=True, blank=True, help_text="Empty: 5 s (or the total if lower).")
    first_byte_timeout_seconds = models.FloatField(
        null=True, blank=True, help_text="Streams: until the first token. Empty: the total timeout."
    )
    max_retries = models.PositiveSmallIntegerField(
        default=1, help_text="Further tries of this backend after a connection error, 429 or 5xx (never mid-stream)."
    )
    options = models.JSONField(default=dict, blank=True, help_text='Kind-specific, e.g. {"api_version": "2024-10-21"}.')
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()}, {self.get_location_display()})"

    @property
    def is_on_prem(self) -> bool:
        return self.location == Location.ON_PREM

    def config(self) -> BackendConfig:
        return BackendConfig(
            name=self.name,
            kind=self.kind,
            base_url=self.base_url,
            location=self.location,
            api_key_env=self.api_key_env,
            timeout=self.timeout_seconds,
            options=dict(self.options or {}),
            connect_timeout=self.connect_timeout_seconds,
            first_byte_timeout=self.first_byte_timeout_seconds,
            max_retries=self.max_retries,
        )


class BackendHealth(models.Model):
    """Runtime state of a backend's circuit breaker, shared by every worker process.

    Kept apart from `Backend`, which is audited configuration: these counters change with
    traffic. Read with the route before the upstream call, written with the audit row after it.
    """

    backend = models.OneToOneField(Backend, on_delete=models.CASCADE, primary_key=True, related_name="health")
    consecutive_failures = models.PositiveIntegerField(default=0)
    open_until = models.DateTimeField(null=True, blank=True, help_text="Not tried before this time.")
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name_plural = "backend health"

    def __str__(self) -> str:
        return f"{self.backend_id}: {self.consecutive_failures} consecutive failures"

    def is_open(self, now: datetime) -> bool:
        return self.open_until is not None and self.open_until > now


class Model(models.Model):
    name = models.CharField(max_length=128, unique=True, help_text="The public name clients send as `model`.")
    backend = models.ForeignKey(Backend, on_delete=models.PROTECT, related_name="models")
    upstream_model = models.CharField(max_length=256, help_text="The name the backend knows (Azure: the deployment).")
    input_price_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    output_price_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelFallback(models.Model):
    """One link of a model's ordered fallback chain: tried in `position` order after the model's
    own backend fails. Whether a request may use a link is decided per request, at dispatch
    (`routing.boundary`), never here."""

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="fallback_links")
    fallback = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["model", "position"]
        constraints = [
            models.UniqueConstraint(fields=["model", "position"], name="routing_fallback_position_unique"),
            models.UniqueConstraint(fields=["model", "fallback"], name="routing_fallback_once"),
            models.CheckConstraint(condition=~models.Q(model=models.F("fallback")), name="routing_fallback_not_itself"),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} → {self.fallback_id} (#{self.position})"


# No underscores: tools are exposed as `server__tool`, so `__` must split a name unambiguously.
MCP_SERVER_NAME = RegexValidator(r"^[a-z0-9][a-z0-9-]{0,63}\Z", "lowercase letters, digits and hyphens (no underscores)")
MCP_DEFAULT_TIMEOUT = 30.0


class McpServer(models.Model):
    """An upstream MCP server (Streamable HTTP) whose tools the /mcp gateway offers, governed.

    Configuration comes from `import_routing` (audited); `last_error` is runtime state the
    gateway writes when a call to the server fails.
    """

    name = models.CharField(max_length=64, unique=True, validators=[MCP_SERVER_NAME])
    url = models.URLField(max_length=500, help_text="The server's Streamable HTTP endpoint, e.g. https://crm.internal/mcp.")
    location = models.CharField(max_length=16, choices=Location.choices)
    # The name of an environment variable, never the secret: the database must not hold it.
    api_key_env = models.CharField(
        max_length=128, blank=True, help_text="Env variable holding the bearer token the gateway sends upstream."
    )
    timeout_seconds = models.FloatField(null=True, blank=True, help_text="Whole call. Empty: 30 s.")
    last_error = models.CharField(max_length=500, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"

    def __str__(self) -> str:
        return f"{self.name} ({self.get_location_display()})"

    @property
    def is_on_prem(self) -> bool:
        return self.location == Location.ON_PREM

    @property
    def timeout(self) -> float:
        return self.timeout_seconds or MCP_DEFAULT_TIMEOUT
