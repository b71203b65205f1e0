"""The governance console for teams and keys. Every write goes through teams.services."""

from __future__ import annotations

import csv
import secrets
from datetime import datetime, time, timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from audit.actors import console_actor

from .charts import bar_chart
from .forms import IssueKeyForm, RevokeKeyForm, SpendRangeForm, TeamForm
from .models import ApiKey, Team
from .periods import period_bounds
from .services import (
    TEAM_SETTINGS,
    api_key_issue,
    api_key_revoke,
    api_key_set_expiry,
    team_create,
    team_delete,
    team_update,
)
from .spend import ModelSpend, daily_spend, spend_by_model, team_period_spend

# A just-issued key travels from the POST to the one page view that follows it in two halves:
# the key masked with a random pad in the approver's session (the database), the pad in a
# cookie scoped to that page. Neither half alone is the key; the page view consumes both.
ISSUED_SESSION_KEY = "synapse_issued_key"
REVEAL_COOKIE = "synapse_reveal"
REVEAL_SECONDS = 300


def _hand_over(request: HttpRequest, key_id: int, plaintext: str) -> HttpResponse:
    raw = plaintext.encode()
    pad = secrets.token_bytes(len(raw))
    masked = bytes(a ^ b for a, b in zip(raw, pad, strict=True))
    request.session[ISSUED_SESSION_KEY] = {"key_id": key_id, "masked": masked.hex()}
    url = reverse("admin:teams_apikey_issued", args=[key_id])
    response = redirect(url)
    response.set_cookie(
        REVEAL_COOKIE,
        pad.hex(),
        max_age=REVEAL_SECONDS,
        path=url,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure(),
    )
    return response


def _take_over(request: HttpRequest, key_id: int) -> str:
    """The plaintext if this browser just issued this key (both halves present), once; else ""."""
    pending = request.session.pop(ISSUED_SESSION_KEY, None)
    pad_hex = request.COOKIES.get(REVEAL_COOKIE, "")
    if not pending or pending.get("key_id") != key_id or not pad_hex:
        return ""
    try:
        masked, pad = bytes.fromhex(pending["masked"]), bytes.fromhex(pad_hex)
    except ValueError:
        return ""
    if len(masked) != len(pad):
        return ""
    return bytes(a ^ b for a, b in zip(masked, pad, strict=True)).decode(errors="replace")


def _spend_range(
    request: HttpRequest, *, zone: Any, default: tuple[datetime, datetime]
) -> tuple[SpendRangeForm, datetime, datetime]:
    """[start, end) from the page's From/To dates (the team's zone), else the budget period."""
    form = SpendRangeForm(request.GET or None)
    start, end = default
    if form.is_bound and form.is_valid():
        if form.cleaned_data.get("start"):
            start = datetime.combine(form.cleaned_data["start"], time.min, tzinfo=zone)
        if form.cleaned_data.get("end"):
            end = datetime.combine(form.cleaned_data["end"] + timedelta(days=1), time.min, tzinfo=zone)
    return form, start, end


def _model_spend_csv(rows: list[ModelSpend], *, filename: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(["key", "model", "requests_served", "refused", "prompt_tokens", "completion_tokens", "spent_usd"])
    for row in rows:
        writer.writerow([row.key_name, row.model, row.requests, row.refused, row.prompt_tokens, row.completion_tokens, row.spent])
    return response


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    form = TeamForm
    list_display = ("name", "display_name", "owner_email", "active_keys", "budget", "issue_key_link", "spend_link", "created_at")
    search_fields = ("name", "display_name", "owner_email")
    readonly_fields = ("created_at",)
    fieldsets = (
        (None, {"fields": ("name", "display_name", "owner_email", "created_at")}),
        ("Team-wide limits (each key's own limits apply too)", {"fields": ("rpm", "tpm")}),
        ("Budget", {"fields": ("budget", "budget_period", "time_zone")}),
        (
            "Business hours (off-hours anomaly rule)",
            {"fields": ("business_hours_start", "business_hours_end", "business_days")},
        ),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Team | None = None) -> tuple[str, ...]:
        # A team's identity is referenced by keys and audit rows; it is fixed once created.
        return ("name", "created_at") if obj is not None else ("created_at",)

    @admin.display(description="active keys")
    def active_keys(self, obj: Team) -> int:
        now = timezone.now()
        return sum(1 for key in obj.api_keys.all() if key.is_active(now))

    @admin.display(description="")
    def issue_key_link(self, obj: Team) -> str:
        return format_html('<a class="button" href="{}">Issue key</a>', reverse("admin:teams_team_issue_key", args=[obj.pk]))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return super().get_queryset(request).prefetch_related("api_keys")

    @admin.display(description="")
    def spend_link(self, obj: Team) -> str:
        return format_html('<a href="{}">Spend</a>', reverse("admin:teams_team_spend", args=[obj.pk]))

    def save_model(self, request: HttpRequest, obj: Team, form: Any, change: bool) -> None:
        settings = {name: form.cleaned_data[name] for name in TEAM_SETTINGS if name in form.cleaned_data}
        if change:
            # The same service as every other write, so the change is validated and audited.
            team_update(
                team=Team.objects.get(pk=obj.pk),
                changes={name: settings[name] for name in form.changed_data if name in settings},
                actor=console_actor(request),
            )
            return
        actor = console_actor(request)
        created = team_create(name=obj.name, owner_email=obj.owner_email, display_name=obj.display_name, actor=actor)
        rest = {name: value for name, value in settings.items() if name not in ("display_name", "owner_email")}
        team_update(team=created, changes=rest, actor=actor)
        obj.pk = created.pk

    def response_add(self, request: HttpRequest, obj: Team, post_url_continue: str | None = None) -> HttpResponse:
        response = super().response_add(request, obj, post_url_continue)
        if "_addanother" not in request.POST and "_continue" not in request.POST:
            # The usual next step: a team exists to hold keys.
            return redirect(reverse("admin:teams_team_issue_key", args=[obj.pk]))
        return response

    def has_delete_permission(self, request: HttpRequest, obj: Team | None = None) -> bool:
        # A team that has had keys stays (its keys and audit rows name it): no Delete button,
        # rather than a confirmation page saying the user lacks permission to delete keys.
        if obj is not None and obj.api_keys.exists():
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: Team) -> None:
        team_delete(team=obj, actor=console_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        for team in queryset:
            team_delete(team=team, actor=console_actor(request))

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:team_id>/issue-key/",
                self.admin_site.admin_view(self.issue_key_view),
                name="teams_team_issue_key",
            ),
            path("<int:team_id>/spend/", self.admin_site.admin_view(self.spend_view), name="teams_team_spend"),
            *super().get_urls(),
        ]

    def issue_key_view(self, request: HttpRequest, team_id: int) -> HttpResponse:
        if not request.user.has_perm("teams.add_apikey"):
            raise PermissionDenied
        team = get_object_or_404(Team, pk=team_id)
        form = IssueKeyForm(request.POST or None, team=team)
        context = {**self.admin_site.each_context(request), "team": team, "form": form, "title": f"Issue a key for {team}"}
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                issued = api_key_issue(
                    team=team,
                    name=data["name"],
                    purpose=data["purpose"],
                    system_prompt=data["system_prompt"],
                    models=[m.name for m in data["models"]],
                    classification=data["classification"],
                    rpm=data["rpm"],
                    tpm=data["tpm"],
                    max_tokens=data["max_tokens"],
                    max_messages=data["max_messages"],
                    max_prompt_tokens=data["max_prompt_tokens"],
                    max_concurrent=data["max_concurrent"],
                    budget=data["budget"],
                    enforcement=data["enforcement"],
                    expires_at=data["expires_at"],
                    requested_by=data["requested_by"],
                    approved_by=console_actor(request),
                    tools=data["tools"],
                )
            except ValidationError as exc:
                for field, errors in getattr(exc, "message_dict", {"__all__": exc.messages}).items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                # POST-redirect-GET: a reload of the page that follows issues nothing.
                return _hand_over(request, issued.api_key.pk, issued.plaintext)
        return TemplateResponse(request, "admin/teams/issue_key.html", context)

    def spend_view(self, request: HttpRequest, team_id: int) -> HttpResponse:
        team = get_object_or_404(Team, pk=team_id)
        if not self.has_view_permission(request, team):
            raise PermissionDenied
        spend = team_period_spend(team=team)
        range_form, start, end = _spend_range(request, zone=team.zone(), default=(spend.start, spend.end))
        by_model = spend_by_model(start=start, end=end, team_id=team.pk)
        if request.GET.get("format") == "csv":
            return _model_spend_csv(by_model, filename=f"spend-{team.name}-{start:%Y%m%d}-{end:%Y%m%d}.csv")
        trend = daily_spend(zone=team.zone(), team_id=team.pk)
        chart = bar_chart([(f"{d:%d %b}", v) for d, v in trend], title="Spend per day, last 30 days", unit="$", decimals=2)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Spend of {team}",
            "team": team,
            "spend": spend,
            "chart": chart,
            "time_zone": team.zone().key,
            "range_form": range_form,
            "range": (start, end - timedelta(microseconds=1)),
            "by_model": by_model,
        }
        return TemplateResponse(request, "admin/teams/spend.html", context)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "name", "team", "key_prefix", "classification", "enforcement", "status", "created_at", "expires_at", "approved_by",
        "spend_link",
    )  # fmt: skip
    list_filter = ("classification", "enforcement", "team", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "lookup_id", "team__name")
    list_select_related = ("team", "approved_by")
    actions = ["revoke_selected"]
    fields = (
        "name", "purpose", "team", "key_prefix", "classification", "enforcement", "system_prompt", "models_list",
        "tools_list", "requests_per_minute", "tokens_per_minute", "max_tokens", "max_messages", "max_prompt_tokens",
        "max_concurrent", "budget", "requested_by", "approved_by",
        "created_at", "expires_at",
        "revoked_at", "revoked_by", "revoke_reason",
    )  # fmt: skip

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        # The binding is immutable: only the expiry stays editable (revocation is an action).
        return [f for f in self.fields if f != "expires_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are issued from a team's "Issue key" page

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # revoke instead; the database refuses deletion of issued keys too

    def get_urls(self) -> list[Any]:
        return [
            path("<int:key_id>/spend/", self.admin_site.admin_view(self.spend_view), name="teams_apikey_spend"),
            path("<int:key_id>/issued/", self.admin_site.admin_view(self.issued_view), name="teams_apikey_issued"),
            path("<int:key_id>/revoke/", self.admin_site.admin_view(self.revoke_view), name="teams_apikey_revoke"),
            *super().get_urls(),
        ]

    def issued_view(self, request: HttpRequest, key_id: int) -> HttpResponse:
        """The one-time reveal: shows the plaintext if this session just issued this key, else says so."""
        api_key = get_object_or_404(ApiKey.objects.select_related("team"), pk=key_id)
        if not self.has_view_permission(request, api_key):
            raise PermissionDenied
        plaintext = _take_over(request, api_key.pk)
        models = list(api_key.allowed_models.values_list("name", flat=True))
        context = {
            **self.admin_site.each_context(request),
            "title": "Key issued — copy it now" if plaintext else f"Key '{api_key.name}'",
            "api_key": api_key,
            "team": api_key.team,
            "plaintext": plaintext,
            "models": models,
            "base_url": request.build_absolute_uri("/v1"),
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/teams/key_issued.html", context)
        response["Cache-Control"] = "no-store"
        response.delete_cookie(REVEAL_COOKIE, path=reverse("admin:teams_apikey_issued", args=[api_key.pk]))
        return response

    def revoke_view(self, request: HttpRequest, key_id: int) -> HttpResponse:
        """Revoke one key after a confirmation page that asks for the reason (recorded in the audit row)."""
        api_key = get_object_or_404(ApiKey.objects.select_related("team"), pk=key_id)
        if not self.has_change_permission(request, api_key):
            raise PermissionDenied
        change_url = reverse("admin:teams_apikey_change", args=[api_key.pk])
        if api_key.revoked_at is not None:
            self.message_user(request, "This key is already revoked.", messages.INFO)
            return redirect(change_url)
        form = RevokeKeyForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            api_key_revoke(api_key=api_key, revoked_by=console_actor(request), reason=form.cleaned_data["reason"])
            self.message_user(request, f"Key '{api_key.name}' revoked; it is refused from its next request.", messages.SUCCESS)
            return redirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Revoke key '{api_key.name}'?",
            "api_key": api_key,
            "form": form,
            "opts": self.model._meta,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/teams/revoke_key.html", context)

    def spend_view(self, request: HttpRequest, key_id: int) -> HttpResponse:
        api_key = get_object_or_404(ApiKey.objects.select_related("team"), pk=key_id)
        if not self.has_view_permission(request, api_key):
            raise PermissionDenied
        team = api_key.team
        start, end = period_bounds(period=team.budget_period, zone=team.zone(), at=timezone.now())
        line = next(line for line in team_period_spend(team=team).keys if line.object_id == api_key.pk)
        range_form, range_start, range_end = _spend_range(request, zone=team.zone(), default=(start, end))
        by_model = spend_by_model(start=range_start, end=range_end, key_id=api_key.pk)
        if request.GET.get("format") == "csv":
            name = f"spend-{team.name}-key{api_key.pk}-{range_start:%Y%m%d}-{range_end:%Y%m%d}.csv"
            return _model_spend_csv(by_model, filename=name)
        trend = daily_spend(zone=team.zone(), key_id=api_key.pk)
        chart = bar_chart([(f"{d:%d %b}", v) for d, v in trend], title="Spend per day, last 30 days", unit="$", decimals=2)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Spend of key '{api_key.name}'",
            "team": team,
            "api_key": api_key,
            "spend": {"start": start, "end": end, "total": line, "keys": []},
            "chart": chart,
            "time_zone": team.zone().key,
            "range_form": range_form,
            "range": (range_start, range_end - timedelta(microseconds=1)),
            "by_model": by_model,
        }
        return TemplateResponse(request, "admin/teams/spend.html", context)

    @admin.display(description="")
    def spend_link(self, obj: ApiKey) -> str:
        return format_html('<a href="{}">Spend</a>', reverse("admin:teams_apikey_spend", args=[obj.pk]))

    @admin.display(description="Requests per minute")
    def requests_per_minute(self, obj: ApiKey) -> str:
        return str(obj.rpm) if obj.rpm is not None else "— (unlimited)"

    @admin.display(description="Tokens per minute")
    def tokens_per_minute(self, obj: ApiKey) -> str:
        return str(obj.tpm) if obj.tpm is not None else "— (unlimited)"

    @admin.display(description="key")
    def key_prefix(self, obj: ApiKey) -> str:
        return f"{obj.prefix}…"

    @admin.display(description="tools")
    def tools_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.tool_patterns) or "— (no MCP tools; its own /v1 function tools allowed)"

    @admin.display(description="models")
    def models_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.allowed_models.values_list("name", flat=True))

    @admin.display(description="status")
    def status(self, obj: ApiKey) -> str:
        if obj.revoked_at:
            return "revoked"
        if obj.expires_at and obj.expires_at <= timezone.now():
            return "expired"
        return "active"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if "expires_at" in form.changed_data:
            api_key_set_expiry(api_key=obj, expires_at=obj.expires_at, actor=console_actor(request))

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key, revoked_by=console_actor(request), reason="revoked in the admin")
            count += 1
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)
