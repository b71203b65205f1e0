"""The two console roles: joining the group is enough, and each reaches exactly its pages."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from alerts.models import Alert
from audit.access import APPROVER_GROUP, roles_ensure, user_groups_set
from audit.services import AUDITOR_GROUP
from audit.tests.logins import console_login
from teams.services import IssuedKey

pytestmark = pytest.mark.django_db


def member_of(group: str, username: str) -> Client:
    roles_ensure()
    user = get_user_model().objects.create_user(username=username, password="a-long-pass-4321")
    user_groups_set(user=user, groups=Group.objects.filter(name=group))
    client = Client()
    # A real login, not force_login: staff status must have followed the group.
    assert console_login(client, username=username, password="a-long-pass-4321")
    return client


def test_each_role_holds_exactly_its_permissions() -> None:
    roles = roles_ensure()
    auditor = {f"{p.content_type.app_label}.{p.codename}" for p in roles[AUDITOR_GROUP].permissions.all()}
    assert auditor == {"audit.view_auditevent"}
    approver = {f"{p.content_type.app_label}.{p.codename}" for p in roles[APPROVER_GROUP].permissions.all()}
    assert "teams.add_apikey" in approver and "teams.change_apikey" in approver and "alerts.change_alert" in approver
    assert "dlp.change_pattern" in approver
    assert not any(p.startswith(("audit.", "auth.", "routing.")) or ".delete_" in p for p in approver)


def test_the_auditor_reads_and_exports_the_trail_and_nothing_else(sensitive_key: IssuedKey) -> None:
    console = member_of(AUDITOR_GROUP, "audrey2")
    assert console.get(reverse("admin:audit_auditevent_changelist")).status_code == 200
    export = console.get(reverse("admin:audit_auditevent_export"), {"format": "csv"})
    assert export.status_code == 200
    key, team = sensitive_key.api_key, sensitive_key.api_key.team
    for url in (
        reverse("admin:teams_team_changelist"),
        reverse("admin:teams_team_spend", args=[team.pk]),
        reverse("admin:teams_apikey_spend", args=[key.pk]),
        reverse("admin:teams_apikey_revoke", args=[key.pk]),
        reverse("admin:teams_team_issue_key", args=[team.pk]),
        reverse("admin:alerts_alert_changelist"),
        reverse("admin:routing_model_changelist"),
        reverse("admin:auth_user_changelist"),
    ):
        page = console.get(url)
        assert page.status_code == 403, url
        # A console page, not a bare "403 Forbidden".
        assert b"Synapse governance console" in page.content and b"Not allowed" in page.content, url


def test_the_auditor_dashboard_offers_no_alert_link(sensitive_key: IssuedKey) -> None:
    Alert.objects.create(kind="dlp_blocks", severity="warning", fired_at="2026-01-01T00:00:00Z", title="t", subject="s")
    console = member_of(AUDITOR_GROUP, "audrey3")
    page = console.get(reverse("admin:index"))
    assert page.status_code == 200 and b"alerts/alert" not in page.content


def test_the_approver_works_on_teams_keys_packs_and_alerts_only(sensitive_key: IssuedKey) -> None:
    console = member_of(APPROVER_GROUP, "april")
    team = sensitive_key.api_key.team
    for url in (
        reverse("admin:teams_team_changelist"),
        reverse("admin:teams_apikey_changelist"),
        reverse("admin:teams_team_issue_key", args=[team.pk]),
        reverse("admin:dlp_pattern_changelist"),
        reverse("admin:alerts_alert_changelist"),
    ):
        assert console.get(url).status_code == 200, url
    for url in (
        reverse("admin:audit_auditevent_changelist"),
        reverse("admin:auth_user_changelist"),
        reverse("admin:routing_model_changelist"),
    ):
        assert console.get(url).status_code == 403, url


def test_the_alert_page_offers_its_requests_only_to_who_may_read_them(approver) -> None:
    from alerts.services import alert_fire

    alert = alert_fire(kind="dlp_blocks", title="5 DLP blocks", subject="key:9", key_id=9)
    assert alert is not None
    url = reverse("admin:alerts_alert_change", args=[alert.pk])
    page = member_of(APPROVER_GROUP, "april2").get(url).content.decode()
    assert 'id="acknowledge-form"' in page and 'id="alert-requests"' not in page
    operator = Client()
    operator.force_login(approver)
    assert 'id="alert-requests"' in operator.get(url).content.decode()


def test_migrate_sets_the_roles_once_after_every_apps_permissions(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.management.sql import emit_post_migrate_signal

    from audit import receivers

    Group.objects.filter(name__in=[AUDITOR_GROUP, APPROVER_GROUP]).delete()
    calls: list[int] = []

    def counted() -> dict[str, Group]:
        calls.append(1)
        return roles_ensure()

    monkeypatch.setattr(receivers, "roles_ensure", counted)

    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")

    assert calls == [1]
    approver = Group.objects.get(name=APPROVER_GROUP).permissions.values_list("content_type__app_label", flat=True)
    assert {"teams", "dlp", "alerts"} <= set(approver)
    assert Group.objects.get(name=AUDITOR_GROUP).permissions.filter(codename="view_auditevent").exists()
