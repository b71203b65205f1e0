"""Console for alerts (read, acknowledge), anomaly rules (tune) and webhooks (subscribe).

Every write goes through alerts.services, so it is validated and audited the same way
whether it comes from here or from code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode

from audit.actors import console_actor

from .models import Alert, AlertKind, AnomalyRule, WebhookDelivery, WebhookEndpoint
from .services import alert_acknowledge, anomaly_rule_update, webhook_endpoint_create, webhook_endpoint_update

# The refusal an alert of this kind counts, as the audit list's decision filter names it.
KIND_DECISIONS: dict[str, str] = {
    AlertKind.DLP_BLOCKS: "blocked_dlp",
    AlertKind.AUTH_FAILURES: "blocked_auth",
    AlertKind.LIMIT_BREACH: "blocked_limit",
}


def alert_requests_url(alert: Alert) -> str:
    """The audit list narrowed to the alert's team or key, the day(s) it covers and its refusal kind."""
    query: dict[str, Any] = {}
    if alert.key_id is not None:
        query["key_id"] = alert.key_id
    elif alert.team_id is not None:
        query["team_id"] = alert.team_id
    if alert.kind in KIND_DECISIONS:
        query["decision"] = KIND_DECISIONS[alert.kind]
    fired = timezone.localtime(alert.fired_at)
    # The rules look back at most a day before firing: the day before and the day of the alert.
    query["occurred_from"] = (fired - timedelta(days=1)).date().isoformat()
    query["occurred_to"] = fired.date().isoformat()
    return f"{reverse('admin:audit_auditevent_changelist')}?{urlencode(query)}"


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("fired_at", "kind", "severity", "title", "acknowledged")
    list_filter = ("kind", "severity", ("acknowledged_at", admin.EmptyFieldListFilter))
    search_fields = ("title", "subject")
    # Every field shown is read-only (the dedupe key is internal and not shown): an alert is
    # evidence; acknowledging it, with a note, is the one thing to do on its page.
    fields = (
        "kind", "severity", "fired_at", "title", "subject", "team_id", "key_id", "detail",
        "acknowledged_at", "acknowledged_by", "acknowledge_note",
    )  # fmt: skip
    readonly_fields = fields
    list_select_related = ("acknowledged_by",)
    actions = ["acknowledge_selected"]
    show_full_result_count = False
    change_form_template = "admin/alerts/alert/change_form.html"

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:alert_id>/acknowledge/", self.admin_site.admin_view(self.acknowledge_view), name="alerts_alert_acknowledge"
            ),
            *super().get_urls(),
        ]

    def acknowledge_view(self, request: HttpRequest, alert_id: int) -> HttpResponse:
        alert = get_object_or_404(Alert, pk=alert_id)
        if request.method != "POST" or not self.has_change_permission(request, alert):
            raise PermissionDenied
        note = request.POST.get("note", "").strip()
        alert_acknowledge(alert=alert, by=console_actor(request), note=note)
        self.message_user(request, "Alert acknowledged.", messages.SUCCESS)
        return redirect(reverse("admin:alerts_alert_change", args=[alert.pk]))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {**(extra_context or {}), "title": "Select an alert to view or acknowledge"}
        return super().changelist_view(request, context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        alert = Alert.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            # Only offered to who may read the audit trail (auditors, operators).
            "requests_url": alert_requests_url(alert) if alert and request.user.has_perm("audit.view_auditevent") else "",
        }
        return super().change_view(request, object_id, form_url, context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False  # alerts are evidence

    @admin.display(boolean=True, description="acknowledged")
    def acknowledged(self, obj: Alert) -> bool:
        return obj.is_acknowledged

    @admin.action(description="Acknowledge selected alerts", permissions=["change"])
    def acknowledge_selected(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        count = 0
        for alert in queryset.filter(acknowledged_at__isnull=True):
            alert_acknowledge(alert=alert, by=console_actor(request))
            count += 1
        self.message_user(request, f"Acknowledged {count} alert(s).", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: Alert, form: Any, change: bool) -> None:
        return None  # nothing here is editable; acknowledging is the action


@admin.register(AnomalyRule)
class AnomalyRuleAdmin(admin.ModelAdmin):
    list_display = (
        "kind",
        "enabled",
        "threshold",
        "window_minutes",
        "factor",
        "baseline_minutes",
        "cooldown_minutes",
        "severity",
    )
    readonly_fields = ("kind", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # one row per rule kind, created by migration

    def has_delete_permission(self, request: HttpRequest, obj: AnomalyRule | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: AnomalyRule, form: Any, change: bool) -> None:
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        anomaly_rule_update(rule=AnomalyRule.objects.get(pk=obj.pk), changes=changes, actor=console_actor(request))


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    kinds = forms.MultipleChoiceField(
        choices=AlertKind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every kind.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("name", "url", "kinds", "is_active")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("name", "url", "is_active", "kinds", "created_at")
    readonly_fields = ("signing_secret", "created_at")

    def has_delete_permission(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> bool:
        return False  # deliveries refer to it; deactivate instead

    @admin.display(description="signing secret")
    def signing_secret(self, obj: WebhookEndpoint) -> str:
        if not obj.pk:
            return "Generated when saved."
        return format_html(
            "<code>{}</code><div class='help'>HMAC-SHA-256 key of the Synapse-Signature header "
            "(t=&lt;unix time&gt;,v1=hex(HMAC(secret, t + '.' + body))).</div>",
            obj.secret,
        )

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            webhook_endpoint_update(
                endpoint=WebhookEndpoint.objects.get(pk=obj.pk),
                name=data["name"],
                url=data["url"],
                kinds=data["kinds"],
                is_active=data["is_active"],
                actor=console_actor(request),
            )
            return
        created = webhook_endpoint_create(name=data["name"], url=data["url"], kinds=data["kinds"], actor=console_actor(request))
        if not data["is_active"]:
            webhook_endpoint_update(
                endpoint=created,
                name=created.name,
                url=created.url,
                kinds=created.kinds,
                is_active=False,
                actor=console_actor(request),
            )
        obj.pk = created.pk


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "endpoint", "alert", "status", "attempts", "last_status", "next_attempt_at", "delivered_at")
    list_filter = ("status", "endpoint")
    list_select_related = ("endpoint", "alert")
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False
