"""The audit log in the console: read-only for everyone, fast on millions of rows.

Nobody can add, change or delete an event here (the database refuses it anyway). Filters
offer fixed choices or small lookup tables, never a DISTINCT over the audit table, and the
paginator counts at most a few thousand rows instead of the whole table.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from .models import AuditEvent, Decision


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows: a COUNT(*) over the whole audit table takes seconds."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by().values("pk")[: self.CAP].count()


class DecisionFilter(admin.SimpleListFilter):
    title = "decision"
    parameter_name = "decision"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(Decision.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        return queryset.filter(decision=self.value()) if self.value() else queryset


class StatusFilter(admin.SimpleListFilter):
    title = "HTTP status"
    parameter_name = "status"
    RANGES = {"2xx": (200, 300), "4xx": (400, 500), "5xx": (500, 600)}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        exact = ["401", "403", "413", "429", "499", "502", "503", "504"]
        return [(name, name) for name in self.RANGES] + [(code, code) for code in exact]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        value = self.value()
        if not value:
            return queryset
        if value in self.RANGES:
            low, high = self.RANGES[value]
            return queryset.filter(status__gte=low, status__lt=high)
        return queryset.filter(status=int(value)) if value.isdigit() else queryset


class TeamFilter(admin.SimpleListFilter):
    title = "team"
    parameter_name = "team_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        from teams.models import Team  # the small teams table, not a DISTINCT over the audit log

        return [(str(pk), name) for pk, name in Team.objects.order_by("name").values_list("pk", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        value = self.value()
        return queryset.filter(team_id=int(value)) if value and value.isdigit() else queryset


class KeyFilter(admin.SimpleListFilter):
    title = "key (use case)"
    parameter_name = "key_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        from teams.models import ApiKey

        keys = ApiKey.objects.order_by("team__name", "name")
        team_id = request.GET.get(TeamFilter.parameter_name, "")
        if team_id.isdigit():
            keys = keys.filter(team_id=int(team_id))
        return [(str(pk), f"{team} · {name}") for pk, name, team in keys.values_list("pk", "name", "team__name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        value = self.value()
        return queryset.filter(key_id=int(value)) if value and value.isdigit() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("occurred_at", "event_type", "request_id", "team_name", "key_name", "model", "backend", "status", "decision")
    list_filter = (
        "event_type",
        DecisionFilter,
        StatusFilter,
        TeamFilter,
        KeyFilter,
        ("occurred_at", admin.DateFieldListFilter),
    )
    search_fields = ("request_id",)
    search_help_text = "Exact request id (req_…), as returned in the x-request-id header."
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    fieldsets = (
        ("Request", {"fields": ("request_id", "event_type", "occurred_at", "endpoint", "model", "backend", "stream")}),
        ("Decision chain", {"fields": ("decision_chain_table", "status", "decision", "error_code")}),
        ("Who", {"fields": ("team_name", "team_id", "key_name", "key_id", "approved_by", "classification", "actor")}),
        ("Client", {"fields": ("client_ip", "user_agent")}),
        ("Usage", {"fields": ("prompt_tokens", "completion_tokens", "cost", "latency_ms", "upstream_latency_ms")}),
        ("Content (keyed hashes, never the text)", {"fields": ("prompt_hmac", "response_hmac", "hash_key_id")}),
        ("Details", {"fields": ("dlp", "attempts", "detail")}),
        ("Integrity", {"fields": ("seq", "prev_hash", "row_hash")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: AuditEvent | None = None) -> list[str]:
        return ["decision_chain_table", *(field.name for field in AuditEvent._meta.concrete_fields)]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent], search_term: str
    ) -> tuple[QuerySet[AuditEvent], bool]:
        # An exact match uses the index; the admin's default (icontains) would scan every row.
        term = search_term.strip()
        return (queryset.filter(request_id=term) if term else queryset), False

    @admin.display(description="decision chain")
    def decision_chain_table(self, obj: AuditEvent) -> str:
        chain = obj.decision_chain()
        if not chain:
            return "—"
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>", ((stage, verdict, detail) for stage, verdict, detail in chain)
        )
        return format_html("<table>{}</table>", rows)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

from . import access_admin  # noqa: E402,F401  (registers the audited user and group pages)
