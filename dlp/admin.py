"""The DLP console: patterns, team overrides, packs and the pattern tester.

Every write goes through dlp.services, so a change made here is validated (RE2 must compile
the expression: the model's clean() puts RE2's reason on the form), audited and picked up by
every worker exactly like a change made with `manage.py import_pack`.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from audit.actors import console_actor
from teams.models import Team

from .engine import Direction
from .models import Pattern, TeamOverride
from .packfile import PackError, load_pack, pack_names
from .selectors import pattern_tester_run
from .services import PATTERN_SETTINGS, PackDiff, pack_apply, pattern_create, pattern_delete, pattern_update, team_override_set

# The tester scans in the request; a bound keeps one paste from holding a worker for long.
TESTER_MAX_CHARS = 200_000


class PatternTesterForm(forms.Form):
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 10, "cols": 100, "spellcheck": "false"}),
        max_length=TESTER_MAX_CHARS,
        strip=False,
        help_text="Scanned with the policy in force now. Neither stored nor logged.",
    )
    direction = forms.ChoiceField(
        choices=[(Direction.PROMPT, "as a prompt"), (Direction.RESPONSE, "as a response")], initial=Direction.PROMPT
    )
    team = forms.ModelChoiceField(
        queryset=Team.objects.all(), required=False, empty_label="(no team: patterns' own actions)",
        help_text="Apply this team's overrides.",
    )  # fmt: skip


@admin.register(Pattern)
class PatternAdmin(admin.ModelAdmin):
    list_display = ("name", "category", "action", "applies_to", "severity", "enabled", "pack", "pack_version", "updated_at")
    list_filter = ("pack", "category", "action", "enabled", "applies_to", "severity")
    search_fields = ("name", "category")
    actions = ["enable_selected", "disable_selected"]
    change_list_template = "admin/dlp/pattern/change_list.html"
    fields = (
        "name", "category", "expression", "validator", "action", "severity", "applies_to", "enabled", "basis",
        "pack", "pack_version", "updated_at",
    )  # fmt: skip

    def get_readonly_fields(self, request: HttpRequest, obj: Pattern | None = None) -> tuple[str, ...]:
        # The name is the pattern's identity in audit rows and packs; packs set their own fields.
        always = ("pack", "pack_version", "updated_at")
        return ("name", *always) if obj is not None else always

    def save_model(self, request: HttpRequest, obj: Pattern, form: Any, change: bool) -> None:
        data = {name: form.cleaned_data[name] for name in PATTERN_SETTINGS if name in form.cleaned_data}
        if change:
            pattern_update(
                pattern=obj,
                changes={name: data[name] for name in form.changed_data if name in data},
                actor=console_actor(request),
            )
            return
        created = pattern_create(name=obj.name, actor=console_actor(request), **data)
        obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: Pattern) -> None:
        pattern_delete(pattern=obj, actor=console_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Pattern]) -> None:
        for pattern in queryset:
            pattern_delete(pattern=pattern, actor=console_actor(request))

    @admin.action(description="Enable selected patterns", permissions=["change"])
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[Pattern]) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable selected patterns", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[Pattern]) -> None:
        self._set_enabled(request, queryset, enabled=False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Pattern], *, enabled: bool) -> None:
        count = 0
        for pattern in queryset.filter(enabled=not enabled):
            pattern_update(pattern=pattern, changes={"enabled": enabled}, actor=console_actor(request))
            count += 1
        self.message_user(request, f"{'Enabled' if enabled else 'Disabled'} {count} pattern(s).", messages.SUCCESS)

    def get_urls(self) -> list[Any]:
        return [
            path("apply-pack/", self.admin_site.admin_view(self.apply_pack_view), name="dlp_pattern_apply_pack"),
            path("tester/", self.admin_site.admin_view(self.tester_view), name="dlp_pattern_tester"),
            *super().get_urls(),
        ]

    def apply_pack_view(self, request: HttpRequest) -> HttpResponse:
        """One button per shipped pack; each shows what applying it would change, then did."""
        if not (request.user.has_perm("dlp.add_pattern") and request.user.has_perm("dlp.change_pattern")):
            raise PermissionDenied
        applied: PackDiff | None = None
        if request.method == "POST":
            name = request.POST.get("pack", "")
            if name not in pack_names():
                messages.error(request, f"no shipped pack named {name!r}")
            else:
                try:
                    applied = pack_apply(name_or_path=name, actor=console_actor(request))
                except (PackError, ValidationError) as exc:
                    messages.error(request, "; ".join(getattr(exc, "messages", [str(exc)])))
                else:
                    messages.success(request, applied.summary())
        packs: list[dict[str, Any]] = []
        for name in pack_names():
            try:
                pack = load_pack(name)
                preview = pack_apply(name_or_path=name, dry_run=True)
            except (PackError, ValidationError) as exc:
                packs.append({"name": name, "error": "; ".join(getattr(exc, "messages", [str(exc)]))})
                continue
            packs.append({"name": name, "pack": pack, "preview": preview})
        context = {
            **self.admin_site.each_context(request),
            "title": "Apply a DLP policy pack",
            "opts": self.model._meta,
            "packs": packs,
            "applied": applied,
        }
        return TemplateResponse(request, "admin/dlp/apply_pack.html", context)

    # Keep the pasted text out of error reports, should the page ever fail.
    @method_decorator(sensitive_post_parameters("text"))
    def tester_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("dlp.view_pattern"):
            raise PermissionDenied
        form = PatternTesterForm(request.POST or None)
        result = None
        if request.method == "POST" and form.is_valid():
            team = form.cleaned_data["team"]
            result = pattern_tester_run(
                text=form.cleaned_data["text"],
                direction=form.cleaned_data["direction"],
                team_id=team.pk if team else None,
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "DLP pattern tester",
            "opts": self.model._meta,
            "form": form,
            "result": result,
        }
        return TemplateResponse(request, "admin/dlp/tester.html", context)


@admin.register(TeamOverride)
class TeamOverrideAdmin(admin.ModelAdmin):
    list_display = ("team", "pattern", "action", "pattern_action", "updated_at")
    list_filter = ("action", "team")
    search_fields = ("team__name", "pattern__name", "pattern__category")
    list_select_related = ("team", "pattern")
    autocomplete_fields = ("team", "pattern")
    fields = ("team", "pattern", "action", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: TeamOverride | None = None) -> tuple[str, ...]:
        # An override is one team's view of one pattern: to move it, remove it and add another.
        return ("team", "pattern", "updated_at") if obj is not None else ("updated_at",)

    @admin.display(description="pattern's own action")
    def pattern_action(self, obj: TeamOverride) -> str:
        return obj.pattern.action

    def save_model(self, request: HttpRequest, obj: TeamOverride, form: Any, change: bool) -> None:
        saved = team_override_set(team=obj.team, pattern=obj.pattern, action=obj.action, actor=console_actor(request))
        assert saved is not None
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: TeamOverride) -> None:
        team_override_set(team=obj.team, pattern=obj.pattern, action=None, actor=console_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TeamOverride]) -> None:
        for override in queryset.select_related("team", "pattern"):
            self.delete_model(request, override)
