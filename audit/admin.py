"""The audit log in the console: read-only for everyone, fast on millions of rows.

Nobody can add, change or delete an event here (the database refuses it anyway). Filters
offer fixed choices or small lookup tables, never a DISTINCT over the audit table, and the
paginator counts at most a few thousand rows instead of the whole table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import path
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from .actors import console_actor
from .export import FORMATS, export_chunks
from .models import AuditEvent, Decision, EventType
from .selectors import audit_event_list, audit_stream_rows_unclosed
from .services import audit_governance_event

# Shown with the request's columns: a stream's opening row is about the same request.
REQUEST_EVENTS = (EventType.REQUEST, EventType.TOOL_CALL, EventType.STREAM_OPENED)


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows: a COUNT(*) over the whole audit table takes seconds."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        assert isinstance(rows, QuerySet)  # the admin pages a queryset
        return rows.order_by().values("pk")[: self.CAP].count()


class UnclosedStreamFilter(admin.SimpleListFilter):
    """Streams opened and never closed: their worker died mid-stream (what `verify_audit` lists)."""

    title = "stream"
    parameter_name = "stream_state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("unclosed", "opened, never closed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        return audit_stream_rows_unclosed(queryset) if self.value() == "unclosed" else queryset


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


class DlpCategoryFilter(admin.SimpleListFilter):
    title = "DLP category"
    parameter_name = "dlp_category"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        from dlp.models import Pattern  # the small patterns table, not a scan of the audit log

        categories = Pattern.objects.order_by("category").values_list("category", flat=True).distinct()
        return [(category, category) for category in categories]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        value = self.value()
        if not value:
            return queryset
        if connection.vendor == "postgresql":
            return queryset.filter(dlp__contains=[{"category": value}])  # jsonb containment
        # SQLite has no JSON containment; the findings are stored as compact JSON text.
        return queryset.filter(dlp__icontains=json.dumps({"category": value})[1:-1])


class DateRangeFilter(admin.ListFilter):
    """From/to dates (inclusive, in the console's time zone): two date inputs, not preset links."""

    title = "date range"
    template = "admin/audit/date_range_filter.html"
    FROM, TO = "occurred_from", "occurred_to"

    def __init__(self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        self.values: dict[str, str] = {}
        for name in (self.FROM, self.TO):
            if name in params:
                value = params.pop(name)
                self.values[name] = value[-1] if isinstance(value, list) else value
                self.used_parameters[name] = self.values[name]

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return [self.FROM, self.TO]

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        yield from [
            {
                "from": self.values.get(self.FROM, ""),
                "to": self.values.get(self.TO, ""),
                "clear_url": changelist.get_query_string(remove=[self.FROM, self.TO]),
                "hidden": [(key, value) for key, value in changelist.params.items() if key not in (self.FROM, self.TO, "p")],
            }
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        zone = timezone.get_current_timezone()
        start, end = parse_date(self.values.get(self.FROM, "") or ""), parse_date(self.values.get(self.TO, "") or "")
        if start is not None:
            queryset = queryset.filter(occurred_at__gte=datetime.combine(start, time.min, tzinfo=zone))
        if end is not None:
            queryset = queryset.filter(occurred_at__lt=datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone))
        return queryset


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    # Decision and status first: what an auditor scans for. The rest narrows as the screen does.
    list_display = ("when", "decision_label", "status", "what", "team_name", "key_name", "model", "request_id_cell")
    list_display_links = ("when",)
    list_filter = (
        DateRangeFilter,
        "event_type",
        UnclosedStreamFilter,
        DecisionFilter,
        StatusFilter,
        DlpCategoryFilter,
        TeamFilter,
        KeyFilter,
        ("occurred_at", admin.DateFieldListFilter),
    )
    search_fields = ("request_id",)
    search_help_text = "The start of a request id (req_…, from the x-request-id header), or part of a team or key name."
    change_list_template = "admin/audit/auditevent/change_list.html"
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

    governance_fieldsets = (
        ("Change", {"fields": ("event_type", "occurred_at", "actor", "change_table")}),
        ("About", {"fields": ("team_name", "team_id", "key_name", "key_id", "approved_by", "classification")}),
        ("Client", {"fields": ("client_ip", "user_agent")}),
        ("Integrity", {"fields": ("seq", "prev_hash", "row_hash")}),
    )

    def get_fieldsets(self, request: HttpRequest, obj: AuditEvent | None = None) -> Any:
        # A governance row has no request columns: show what changed, not ~25 empty fields.
        if obj is not None and obj.event_type not in REQUEST_EVENTS:
            return self.governance_fieldsets
        return self.fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: AuditEvent | None = None) -> list[str]:
        return ["decision_chain_table", "change_table", *(field.name for field in AuditEvent._meta.concrete_fields)]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent], search_term: str
    ) -> tuple[QuerySet[AuditEvent], bool]:
        # Every branch uses an index: a request id prefix (the id's own index), or a team or key
        # name looked up in the small teams tables and matched by id. The admin's default
        # (icontains over the audit table) would scan every row.
        from teams.models import ApiKey, Team

        term = search_term.strip()
        if not term:
            return queryset, False
        team_ids = list(
            Team.objects.filter(Q(name__icontains=term) | Q(display_name__icontains=term)).values_list("pk", flat=True)[:200]
        )
        key_ids = list(ApiKey.objects.filter(name__icontains=term).values_list("pk", flat=True)[:200])
        condition = Q(request_id__startswith=term)
        if team_ids:
            condition |= Q(team_id__in=team_ids)
        if key_ids:
            condition |= Q(key_id__in=key_ids)
        return queryset.filter(condition), False

    @admin.display(description="time", ordering="occurred_at")
    def when(self, obj: AuditEvent) -> str:
        return timezone.localtime(obj.occurred_at).strftime("%Y-%m-%d %H:%M:%S %Z")

    @admin.display(description="decision", ordering="decision")
    def decision_label(self, obj: AuditEvent) -> str:
        return obj.get_decision_display() if obj.decision else "—"

    @admin.display(description="request id")
    def request_id_cell(self, obj: AuditEvent) -> str:
        # Cut to the column's width by CSS; the whole id stays selectable and in the tooltip.
        return format_html('<span title="{}">{}</span>', obj.request_id, obj.request_id) if obj.request_id else "—"

    @admin.display(description="event")
    def what(self, obj: AuditEvent) -> str:
        if obj.event_type in REQUEST_EVENTS:
            return obj.get_event_type_display()
        return format_html("{} <small>by {}</small>", obj.get_event_type_display(), obj.actor or "system")

    @admin.display(description="what changed")
    def change_table(self, obj: AuditEvent) -> str:
        return _detail_html(obj.detail)

    def get_urls(self) -> list[Any]:
        return [
            path("export/", self.admin_site.admin_view(self.export_view), name="audit_auditevent_export"),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The current filtered view, streamed as CSV or JSON lines; the export itself is audited."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        fmt = request.GET.get("format", "csv")
        if fmt not in FORMATS:
            fmt = "csv"
        # The changelist reads its filters from the query string; `format` is ours, not a filter.
        query = request.GET.copy()
        query.pop("format", None)
        request.GET = query  # type: ignore[assignment]  # a mutable copy where the stubs expect the immutable QueryDict
        rows = self.get_changelist_instance(request).get_queryset(request)
        audit_governance_event(
            event_type=EventType.AUDIT_EXPORTED,
            actor=console_actor(request),
            detail={"format": fmt, "filters": query.dict()},
            client_ip=request.META.get("REMOTE_ADDR"),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
        content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson; charset=utf-8"
        response = StreamingHttpResponse(export_chunks(audit_event_list(rows=rows), fmt=fmt), content_type=content_type)
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="synapse-audit-{stamp}.{fmt}"'
        response["Cache-Control"] = "no-store"
        return response

    @admin.display(description="decision chain")
    def decision_chain_table(self, obj: AuditEvent) -> str:
        chain = obj.decision_chain()
        if not chain:
            return "—"
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>", ((stage, verdict, detail) for stage, verdict, detail in chain)
        )
        return format_html("<table>{}</table>", rows)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {**(extra_context or {}), "title": "Select an audit event to view"}
        return super().changelist_view(request, context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False


def _detail_html(detail: Any) -> str:
    """A governance row's detail as a small table: {"changed": {field: [before, after]}} reads
    as "field: before → after"; other keys as "key: value"."""
    if not detail:
        return "—"
    rows: list[tuple[str, str]] = []
    for key, value in detail.items():
        if key == "changed" and isinstance(value, dict):
            for field, change in value.items():
                if isinstance(change, list) and len(change) == 2:
                    rows.append((field, f"{_text(change[0])} → {_text(change[1])}"))
                else:
                    rows.append((field, _text(change)))
        else:
            rows.append((key, _text(value)))
    return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))


def _text(value: Any) -> str:
    if value in (None, "", []):
        return "—"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items())
    return str(value)


from . import access_admin  # noqa: E402,F401  (registers the audited user and group pages)
