"""Console access and routing changes land in the audit chain, field by field."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from audit.access import APPROVER_GROUP, roles_ensure, user_groups_set
from audit.models import AuditEvent
from audit.services import AUDITOR_GROUP
from audit.tests.logins import console_login
from routing.models import Model
from routing.services import model_save

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(approver) -> Client:
    client = Client()
    client.force_login(approver)
    return client


def test_creating_a_user_in_the_console_is_audited(console: Client) -> None:
    response = console.post(
        reverse("admin:auth_user_add"),
        {"username": "bob", "password1": "a-long-pass-9876", "password2": "a-long-pass-9876", "usable_password": "true"},
    )
    assert response.status_code == 302
    row = AuditEvent.objects.get(event_type="user_created")
    assert row.actor == "alice" and row.detail["user"] == "bob" and row.detail["is_superuser"] is False
    assert "a-long-pass" not in str(row.detail) and "pbkdf2" not in str(row.detail)
    assert get_user_model().objects.get(username="bob").check_password("a-long-pass-9876")


def test_granting_superuser_and_a_role_records_before_and_after(console: Client) -> None:
    roles = roles_ensure()
    bob = get_user_model().objects.create_user(username="bob", password="x-pass-1234567")
    response = console.post(
        reverse("admin:auth_user_change", args=[bob.pk]),
        {
            "username": "bob",
            "is_active": "on",
            "is_superuser": "on",
            "groups": [roles[AUDITOR_GROUP].pk],
            "last_login_0": "",
            "last_login_1": "",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    row = AuditEvent.objects.get(event_type="user_changed")
    changed = row.detail["changed"]
    assert changed["is_superuser"] == [False, True]
    assert changed["groups"] == [[], [AUDITOR_GROUP]]
    # Joining the auditor group is enough to log in: staff status follows the role.
    assert changed["is_staff"] == [False, True]
    bob.refresh_from_db()
    assert bob.is_staff and bob.is_superuser


def test_joining_a_role_group_from_the_group_page_grants_login_and_is_audited(console: Client) -> None:
    roles = roles_ensure()
    carol = get_user_model().objects.create_user(username="carol", password="x-pass-1234567")
    group = roles[APPROVER_GROUP]
    response = console.post(
        reverse("admin:auth_group_change", args=[group.pk]),
        {
            "name": APPROVER_GROUP,
            "permissions": list(group.permissions.values_list("pk", flat=True)),
            "members": [carol.pk],
        },
    )
    assert response.status_code == 302
    carol.refresh_from_db()
    assert carol.is_staff and carol.groups.filter(name=APPROVER_GROUP).exists()
    row = AuditEvent.objects.get(event_type="group_changed")
    assert row.detail["changed"] == {"members": [[], ["carol"]]}
    # The freshly joined approver can log in and reach the teams page.
    client = Client()
    assert console_login(client, username="carol", password="x-pass-1234567")
    assert client.get(reverse("admin:teams_team_changelist")).status_code == 200


def test_user_groups_set_service_grants_staff_and_records_the_change(approver) -> None:
    roles_ensure()
    dan = get_user_model().objects.create_user(username="dan")
    user_groups_set(user=dan, groups=Group.objects.filter(name=AUDITOR_GROUP), actor=approver)
    dan.refresh_from_db()
    assert dan.is_staff
    row = AuditEvent.objects.get(event_type="user_changed")
    assert row.detail["changed"]["groups"] == [[], [AUDITOR_GROUP]]


def test_deleting_a_user_is_audited(console: Client) -> None:
    erin = get_user_model().objects.create_user(username="erin")
    response = console.post(reverse("admin:auth_user_delete", args=[erin.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert AuditEvent.objects.get(event_type="user_deleted").detail["user"] == "erin"


def test_a_price_change_is_recorded_field_by_field(approver, routing: None) -> None:
    model = Model.objects.get(name="mock-small")
    old_price = model.input_price_per_mtok
    model.input_price_per_mtok = "3.25"
    model_save(model=model, actor=approver)
    row = AuditEvent.objects.filter(event_type="routing_changed", actor="alice").latest("seq")
    assert row.detail["model"] == "mock-small" and row.detail["created"] is False
    assert row.detail["changed"] == {"input_price_per_mtok": [str(old_price), "3.25"]}
    # Saving without a change records nothing.
    before = AuditEvent.objects.count()
    model_save(model=Model.objects.get(name="mock-small"), actor=approver)
    assert AuditEvent.objects.count() == before


def test_deleting_a_group_in_the_console_is_audited_with_its_members(console: Client) -> None:
    group = Group.objects.create(name="contractors")
    dave = get_user_model().objects.create_user(username="dave", password="x-pass-1234567")
    group.user_set.add(dave)
    response = console.post(reverse("admin:auth_group_delete", args=[group.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Group.objects.filter(name="contractors").exists()
    row = AuditEvent.objects.get(event_type="group_deleted")
    assert row.actor == "alice" and row.detail == {"group": "contractors", "permissions": [], "members": ["dave"]}
