"""Backends and models in the console; saves go through routing.services so they are audited."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from audit.actors import console_actor

from .models import Backend, BackendHealth, McpServer, Model
from .services import backend_circuit_reset, backend_save, circuit_policy, model_fallbacks_set, model_save


@admin.register(Backend)
class BackendAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "location", "base_url", "api_key_env", "timeout_seconds", "max_retries", "circuit")
    list_filter = ("kind", "location")
    list_select_related = ("health",)
    search_fields = ("name", "base_url")
    readonly_fields = ("circuit",)
    actions = ("close_circuit",)

    @admin.display(description="Circuit")
    def circuit(self, obj: Backend) -> str:
        try:
            health: BackendHealth = obj.health
        except BackendHealth.DoesNotExist:
            return "closed"
        now = timezone.now()
        if health.is_open(now) and health.open_until is not None:  # is_open implies an open_until
            seconds = int((health.open_until - now).total_seconds()) + 1
            return f"OPEN for {seconds} s more ({health.consecutive_failures} failures, last: {health.last_error})"
        if health.consecutive_failures >= circuit_policy()[0]:
            return f"half-open: next request is a trial ({health.consecutive_failures} failures)"
        if health.consecutive_failures:
            return f"closed ({health.consecutive_failures} recent failures, last: {health.last_error})"
        return "closed"

    @admin.action(description="Close the circuit now (the backend is fixed)")
    def close_circuit(self, request: HttpRequest, queryset: QuerySet[Backend]) -> None:
        count = backend_circuit_reset(backends=list(queryset), actor=console_actor(request))
        self.message_user(request, f"Circuit closed for {count} backend(s).", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: Backend, form: Any, change: bool) -> None:
        backend_save(backend=obj, actor=console_actor(request))


class ModelForm(forms.ModelForm):
    fallbacks = forms.CharField(
        required=False,
        help_text=(
            "Model names, comma-separated, tried in order when this model's backend fails. "
            "Requests from sensitive keys only ever use the on-premises ones."
        ),
    )

    class Meta:
        model = Model
        fields = "__all__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            names = self.instance.fallback_links.order_by("position").values_list("fallback__name", flat=True)
            self.initial["fallbacks"] = ", ".join(names)

    def clean_fallbacks(self) -> list[str]:
        names = [name.strip() for name in self.cleaned_data["fallbacks"].split(",") if name.strip()]
        known = set(Model.objects.filter(name__in=names).values_list("name", flat=True))
        if missing := [name for name in names if name not in known]:
            raise forms.ValidationError(f"Unknown model(s): {', '.join(missing)}")
        if len(set(names)) != len(names) or self.cleaned_data.get("name") in names:
            raise forms.ValidationError("Name each model once, and not this model itself.")
        return names


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    form = ModelForm
    list_display = ("name", "backend", "upstream_model", "input_price_per_mtok", "output_price_per_mtok", "fallback_chain")
    list_filter = ("backend",)
    list_select_related = ("backend",)
    search_fields = ("name", "upstream_model")

    @admin.display(description="Fallbacks")
    def fallback_chain(self, obj: Model) -> str:
        return " → ".join(obj.fallback_links.order_by("position").values_list("fallback__name", flat=True)) or "—"

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        model_save(model=obj, actor=console_actor(request))
        model_fallbacks_set(model=obj, fallbacks=form.cleaned_data.get("fallbacks") or [], actor=console_actor(request))


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    """Read-only: servers are registered by `import_routing` (config as code, audited)."""

    list_display = ("name", "location", "url", "api_key_env", "timeout_seconds", "last_error", "last_error_at", "updated_at")
    list_filter = ("location",)
    search_fields = ("name", "url")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: McpServer | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: McpServer | None = None) -> bool:
        return False
