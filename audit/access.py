"""Who may use the console: users, their roles (groups) and permissions. Every change is audited.

These are the writes the console's user and group pages make (audit/access_admin.py). Access to
the console is governance state like a key's binding: granting staff or superuser status, or a
role, lands in the same hash chain as the change it enables.

Two roles are groups set up by `roles_ensure` (run after every migrate):
- auditor: read the audit trail and export it; nothing else.
- approver: teams, keys, DLP patterns and packs, alerts.
Joining a role group is enough to log in: staff status follows role membership.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.db import transaction
from django.db.models import Q

from .models import EventType
from .services import AUDITOR_GROUP, audit_governance_event

APPROVER_GROUP = "approver"
ROLE_GROUPS = (AUDITOR_GROUP, APPROVER_GROUP)

# (app_label, model) pairs; the approver may view, add and change them (never delete: teams and
# keys are kept for the record; revocation is a change).
APPROVER_MODELS = (
    ("teams", "team"),
    ("teams", "apikey"),
    ("dlp", "pattern"),
    ("dlp", "teamoverride"),
    ("dlp", "policyversion"),
    ("alerts", "alert"),
    ("alerts", "anomalyrule"),
)
USER_FLAGS = ("is_active", "is_staff", "is_superuser")


def _approver_permissions() -> Q:
    query = Q(pk__in=[])
    for app_label, model in APPROVER_MODELS:
        query |= Q(content_type__app_label=app_label, content_type__model=model, codename__regex=r"^(view|add|change)_")
    return query


@transaction.atomic
def roles_ensure() -> dict[str, Group]:
    """Create the role groups and set exactly their permissions (idempotent)."""
    auditor, _ = Group.objects.get_or_create(name=AUDITOR_GROUP)
    auditor.permissions.set(Permission.objects.filter(content_type__app_label="audit", codename="view_auditevent"))
    approver, _ = Group.objects.get_or_create(name=APPROVER_GROUP)
    approver.permissions.set(Permission.objects.filter(_approver_permissions()))
    return {AUDITOR_GROUP: auditor, APPROVER_GROUP: approver}


def _names(items: Iterable[Any]) -> list[str]:
    return sorted(str(getattr(item, "name", None) or getattr(item, "codename", item)) for item in items)


def _staff_follows_roles(user: Any) -> None:
    in_role = user.groups.filter(name__in=ROLE_GROUPS).exists()
    if in_role and not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])


@transaction.atomic
def user_save(
    *,
    user: Any,
    actor: AbstractBaseUser | None = None,
    groups: Iterable[Group] | None = None,
    permissions: Iterable[Permission] | None = None,
) -> Any:
    """Create or change a console user; groups/permissions, when given, replace the current ones.

    Recorded field by field (before → after) for status flags, roles and direct permissions; the
    password is never recorded, only that it changed.
    """
    created = user.pk is None
    before: dict[str, Any] = {}
    if not created:
        stored = get_user_model().objects.get(pk=user.pk)
        before = {flag: getattr(stored, flag) for flag in USER_FLAGS}
        before["groups"] = _names(stored.groups.all())
        before["permissions"] = _names(stored.user_permissions.all())
        before["password"] = stored.password
    user.save()
    if groups is not None:
        user.groups.set(list(groups))
    if permissions is not None:
        user.user_permissions.set(list(permissions))
    _staff_follows_roles(user)
    after: dict[str, Any] = {flag: getattr(user, flag) for flag in USER_FLAGS}
    after["groups"] = _names(user.groups.all())
    after["permissions"] = _names(user.user_permissions.all())
    if created:
        audit_governance_event(event_type=EventType.USER_CREATED, actor=actor, detail={"user": user.get_username(), **after})
        return user
    changed: dict[str, Any] = {name: [before[name], after[name]] for name in after if before[name] != after[name]}
    if before["password"] != user.password:
        changed["password"] = "changed"
    if changed:
        audit_governance_event(
            event_type=EventType.USER_CHANGED, actor=actor, detail={"user": user.get_username(), "changed": changed}
        )
    return user


@transaction.atomic
def user_groups_set(*, user: Any, groups: Iterable[Group], actor: AbstractBaseUser | None = None) -> Any:
    """Put a user in exactly these groups (roles); joining a role group grants console login."""
    return user_save(user=user, groups=groups, actor=actor)


@transaction.atomic
def user_delete(*, user: Any, actor: AbstractBaseUser | None = None) -> None:
    audit_governance_event(
        event_type=EventType.USER_DELETED,
        actor=actor,
        detail={"user": user.get_username(), "groups": _names(user.groups.all())},
    )
    user.delete()


@transaction.atomic
def group_save(
    *,
    group: Group,
    actor: AbstractBaseUser | None = None,
    permissions: Iterable[Permission] | None = None,
    members: Iterable[Any] | None = None,
) -> Group:
    """Create or change a group: its name, its permissions, and (when given) its members."""
    created = group.pk is None
    before: dict[str, Any] = {}
    if not created:
        stored = Group.objects.get(pk=group.pk)
        before = {"name": stored.name, "permissions": _names(stored.permissions.all())}
        before["members"] = sorted(u.get_username() for u in stored.user_set.all())
    group.save()
    if permissions is not None:
        group.permissions.set(list(permissions))
    if members is not None:
        group.user_set.set(list(members))
        for member in group.user_set.all():
            _staff_follows_roles(member)
    after = {
        "name": group.name,
        "permissions": _names(group.permissions.all()),
        "members": sorted(u.get_username() for u in group.user_set.all()),
    }
    changed = after if created else {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if changed:
        audit_governance_event(
            event_type=EventType.GROUP_CHANGED,
            actor=actor,
            detail={"group": group.name, "created": created, "changed": changed},
        )
    return group


@transaction.atomic
def group_delete(*, group: Group, actor: AbstractBaseUser | None = None) -> None:
    """Delete a group; its members lose the permissions it granted (staff status stays as it was)."""
    members = list(group.user_set.all())
    audit_governance_event(
        event_type=EventType.GROUP_DELETED,
        actor=actor,
        detail={
            "group": group.name,
            "permissions": _names(group.permissions.all()),
            "members": sorted(u.get_username() for u in members),
        },
    )
    group.delete()
