"""The audit record: one row per /v1 request and per governance change, in one hash chain.

Rows are append-only (database triggers refuse UPDATE, DELETE and TRUNCATE) and chained:
see `audit.chain` for the format and `audit/migrations/0002_chain.py` for the triggers.
"""

from __future__ import annotations

from django.db import models

from .chain import GENESIS


class EventType(models.TextChoices):
    REQUEST = "request", "API request"
    # A streamed answer's first row, committed before its first byte; its `request` row (same
    # request_id) is written when it ends. Not a request of its own: nothing counts it as one.
    STREAM_OPENED = "stream_opened", "Stream opened"
    TEAM_CREATED = "team_created", "Team created"
    TEAM_CHANGED = "team_changed", "Team changed"
    KEY_ISSUED = "key_issued", "Key issued"
    KEY_REVOKED = "key_revoked", "Key revoked"
    KEY_EXPIRY_CHANGED = "key_expiry_changed", "Key expiry changed"
    ROUTING_IMPORTED = "routing_imported", "Routing imported"
    ROUTING_CHANGED = "routing_changed", "Routing changed"
    POLICY_CHANGED = "policy_changed", "DLP policy changed"
    LIMITS_CHANGED = "limits_changed", "Limits or budget changed"
    ADMIN_LOGIN = "admin_login", "Admin login"
    ADMIN_LOGOUT = "admin_logout", "Admin logout"
    ADMIN_LOGIN_FAILED = "admin_login_failed", "Admin login failed"
    ANOMALY_RULE_CHANGED = "anomaly_rule_changed", "Anomaly rule changed"
    ALERT_ACKNOWLEDGED = "alert_acknowledged", "Alert acknowledged"
    WEBHOOK_CREATED = "webhook_created", "Webhook created"
    WEBHOOK_CHANGED = "webhook_changed", "Webhook changed"
    MCP_SERVER_REGISTERED = "mcp_server_registered", "MCP server registered"
    MCP_SERVER_UPDATED = "mcp_server_updated", "MCP server updated"
    TOOL_CALL = "tool_call", "Tool call (MCP)"
    TEAM_DELETED = "team_deleted", "Team deleted"
    USER_CREATED = "user_created", "Console user created"
    USER_CHANGED = "user_changed", "Console user changed"
    USER_DELETED = "user_deleted", "Console user deleted"
    GROUP_CHANGED = "group_changed", "Console role (group) changed"
    GROUP_DELETED = "group_deleted", "Console role (group) deleted"
    AUDIT_EXPORTED = "audit_exported", "Audit trail exported"


class Decision(models.TextChoices):
    """What the gateway decided about a /v1 request; every value the pipeline writes.

    A key in monitor mode is served anyway and its row records `monitor_<what enforce mode
    would have decided>`: only refusals that go through monitor mode (DLP, limits, the limit
    store being down) have one. Governance rows have no decision ("").
    """

    ALLOWED = "allowed", "allowed"
    BLOCKED_AUTH = "blocked_auth", "blocked: key"
    BLOCKED_SCOPE = "blocked_scope", "blocked: scope"
    BLOCKED_DLP = "blocked_dlp", "blocked: DLP"
    BLOCKED_LIMIT = "blocked_limit", "blocked: limit"
    BLOCKED_BUDGET = "blocked_budget", "blocked: budget"
    INVALID_REQUEST = "invalid_request", "invalid request"
    UPSTREAM_ERROR = "upstream_error", "upstream error"
    UPSTREAM_TIMEOUT = "upstream_timeout", "upstream timeout"
    CLIENT_DISCONNECTED = "client_disconnected", "client disconnected"
    CUT_AT_SHUTDOWN = "cut_at_shutdown", "cut at shutdown"  # still running when the worker's grace ran out
    AUDIT_FAILURE = "audit_failure", "audit failure"
    INTERNAL_ERROR = "internal_error", "internal error"
    MONITOR_BLOCKED_DLP = "monitor_blocked_dlp", "monitor: would block (DLP)"
    MONITOR_BLOCKED_LIMIT = "monitor_blocked_limit", "monitor: would block (limit)"
    MONITOR_BLOCKED_BUDGET = "monitor_blocked_budget", "monitor: would block (budget)"
    MONITOR_INTERNAL_ERROR = "monitor_internal_error", "monitor: limit store unavailable"

    @property
    def monitored(self) -> Decision:
        """The decision a monitor-mode row records instead of this refusal (ValueError if none)."""
        return Decision(f"monitor_{self.value}")

    @property
    def is_monitored(self) -> bool:
        return self.value.startswith("monitor_")


# Where in the pipeline each refusal happens, so the detail view can show what was reached.
STAGES = ("key", "request", "scope", "dlp", "limits", "upstream")
REFUSED_AT: dict[str, str] = {
    Decision.BLOCKED_AUTH: "key",
    Decision.INVALID_REQUEST: "request",
    Decision.BLOCKED_SCOPE: "scope",
    Decision.BLOCKED_DLP: "dlp",
    Decision.BLOCKED_LIMIT: "limits",
    Decision.BLOCKED_BUDGET: "limits",
    Decision.UPSTREAM_ERROR: "upstream",
    Decision.UPSTREAM_TIMEOUT: "upstream",
    Decision.CLIENT_DISCONNECTED: "upstream",
    Decision.CUT_AT_SHUTDOWN: "upstream",
}


class AuditEvent(models.Model):
    occurred_at = models.DateTimeField(db_index=True)
    event_type = models.CharField(max_length=32, choices=EventType.choices, db_index=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    actor = models.CharField(max_length=200, blank=True, help_text="Admin user for governance events.")
    team_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    team_name = models.CharField(max_length=64, blank=True)
    key_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    key_name = models.CharField("use case", max_length=200, blank=True, help_text="The key's approved use case.")
    approved_by = models.CharField(max_length=200, blank=True)
    classification = models.CharField(max_length=16, blank=True)
    endpoint = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=128, blank=True)
    backend = models.CharField(max_length=64, blank=True)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    decision = models.CharField(max_length=32, choices=Decision.choices, blank=True, db_index=True)
    error_code = models.CharField(max_length=64, blank=True)
    stream = models.BooleanField(default=False)
    dlp = models.JSONField(default=list, blank=True, help_text="DLP findings: direction, category, pattern, action, count.")
    attempts = models.JSONField(default=list, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    cost = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    upstream_latency_ms = models.FloatField(null=True, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    prompt_hmac = models.CharField(max_length=64, blank=True)
    response_hmac = models.CharField(max_length=64, blank=True)
    hash_key_id = models.CharField(max_length=32, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    # The chain. On PostgreSQL the insert trigger assigns all three (the writer passes the
    # row's content digest in row_hash); db_default makes Django read them back on insert.
    seq = models.BigIntegerField(
        unique=True, db_default=0, editable=False, help_text="Position in the chain: 1, 2, 3 … in commit order."
    )
    prev_hash = models.CharField(max_length=64, db_default=GENESIS, editable=False)
    row_hash = models.CharField(max_length=64, db_default="", editable=False)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["team_id", "occurred_at"], name="audit_team_time"),
            # `audit_match` looks rows up by keyed hash; most governance rows have none.
            models.Index(fields=["prompt_hmac"], name="audit_prompt_hmac", condition=~models.Q(prompt_hmac="")),
            models.Index(fields=["response_hmac"], name="audit_response_hmac", condition=~models.Q(response_hmac="")),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.request_id or self.pk} {self.decision}"

    def decision_chain(self) -> list[tuple[str, str, str]]:
        """What each layer decided for this request, in pipeline order: (stage, verdict, detail)."""
        if self.event_type not in (EventType.REQUEST, EventType.TOOL_CALL):
            return []
        refused_at = REFUSED_AT.get(self.decision)
        stop = STAGES.index(refused_at) if refused_at else len(STAGES)
        details = {
            "key": (
                f"{self.key_name} · team {self.team_name} · approved by {self.approved_by or '—'} · {self.classification}"
                if self.key_id is not None
                else "no valid key"
            ),
            "request": (
                f"mcp · {self.detail.get('rpc_method', '—')}{' · tool ' + self.model if self.model else ''}"
                if self.endpoint == "mcp"
                else f"{self.endpoint} · model {self.model or '—'}{' · stream' if self.stream else ''}"
            ),
            "scope": (
                f"{self.model} → {'MCP server ' if self.event_type == EventType.TOOL_CALL else ''}{self.backend}"
                if self.backend
                else f"{self.model or '—'}"
            ),
            "dlp": "; ".join(
                f"{f.get('direction')}: {f.get('category')} ({f.get('pattern')}) → {f.get('action')} ×{f.get('count', 1)}"
                for f in self.dlp
            )
            or "no findings",
            "limits": "",
            "upstream": "; ".join(
                f"{a.get('backend')}: {a.get('outcome')} {a.get('status') or ''} in {a.get('latency_ms')} ms"
                for a in self.attempts
            )
            or "no call",
        }
        chain = []
        for index, stage in enumerate(STAGES):
            detail = details[stage]
            if index == stop:
                verdict = "refused" if stage != "upstream" else self.decision.replace("_", " ")
                detail = f"{self.error_code}: {detail}" if self.error_code else detail
            elif index > stop or (stage == "key" and self.key_id is None):
                verdict, detail = "not reached", ""
            elif stage == "upstream" and not self.attempts:
                verdict = "no call"
            else:
                verdict = "passed"
            chain.append((stage, verdict, detail))
        outcome = f"{self.decision}{' · ' + self.error_code if self.error_code else ''}"
        if self.prompt_tokens is not None or self.completion_tokens is not None:
            outcome += f" · tokens {self.prompt_tokens or 0}+{self.completion_tokens or 0}"
        if self.cost is not None:
            outcome += f" · cost {self.cost}"
        chain.append(("outcome", str(self.status or "—"), outcome))
        return chain
