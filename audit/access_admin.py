"""The console's user and group pages: the same forms as Django's, every save through audit.access."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.http import HttpRequest

from .access import group_delete, group_save, user_delete, user_save
from .actors import console_actor

User = get_user_model()


class ConsoleUserAdmin(DjangoUserAdmin):
    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # Groups and permissions are saved with the user in save_related (the form's m2m data),
        # so that one audit row carries the whole change.
        pass

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        data = form.cleaned_data
        user_save(
            user=form.instance,
            actor=console_actor(request),
            groups=data.get("groups"),
            permissions=data.get("user_permissions"),
        )
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        user_delete(user=obj, actor=console_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for user in queryset:
            user_delete(user=user, actor=console_actor(request))


class GroupForm(forms.ModelForm):
    members = forms.ModelMultipleChoiceField(
        queryset=User.objects.order_by("username"),
        required=False,
        widget=FilteredSelectMultiple("members", is_stacked=False),
        help_text="Joining the auditor or approver group is enough to log in to the console.",
    )

    class Meta:
        model = Group
        fields = "__all__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["members"] = list(self.instance.user_set.values_list("pk", flat=True))


class ConsoleGroupAdmin(DjangoGroupAdmin):
    form = GroupForm

    def save_model(self, request: HttpRequest, obj: Group, form: Any, change: bool) -> None:
        pass  # saved with its permissions and members in save_related: one audit row per change

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        data = form.cleaned_data
        group_save(
            group=form.instance,
            actor=console_actor(request),
            permissions=data.get("permissions"),
            members=data.get("members"),
        )

    def delete_model(self, request: HttpRequest, obj: Group) -> None:
        group_delete(group=obj, actor=console_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Group]) -> None:
        for group in queryset:
            group_delete(group=group, actor=console_actor(request))


admin.site.unregister(User)
admin.site.register(User, ConsoleUserAdmin)
admin.site.unregister(Group)
admin.site.register(Group, ConsoleGroupAdmin)
