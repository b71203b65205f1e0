"""The console: issuing a key shows it once; the binding cannot be edited; revoke works."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from teams.models import ApiKey, Team
from teams.selectors import api_key_authenticate
from teams.services import IssuedKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(approver) -> Client:
    client = Client()
    client.force_login(approver)
    return client


def test_it_issues_a_key_and_shows_it_once(console: Client, team: Team, routing: None) -> None:
    url = reverse("admin:teams_team_issue_key", args=[team.pk])
    response = console.post(
        url,
        {
            "name": "Triage bot",
            "system_prompt": "Triage tickets.",
            "models": ["mock-small", "llama-3-8b"],
            "classification": "sensitive",
            "enforcement": "enforce",
        },
    )
    assert response.status_code == 200
    plaintext = response.context["issued"].plaintext
    assert plaintext.encode() in response.content
    scope = api_key_authenticate(plaintext)
    assert scope is not None and scope.approved_by == "alice"
    # The key is nowhere to be seen again: not on the key's own page.
    page = console.get(reverse("admin:teams_apikey_change", args=[scope.key_id]))
    assert page.status_code == 200 and plaintext.encode() not in page.content


def test_it_refuses_a_sensitive_key_on_a_cloud_model_in_the_console(console: Client, team: Team, routing: None) -> None:
    url = reverse("admin:teams_team_issue_key", args=[team.pk])
    response = console.post(
        url, {"name": "Leaky", "system_prompt": "x", "models": ["gpt-4o-mini"], "classification": "sensitive"}
    )
    assert response.status_code == 200 and "issued" not in response.context
    assert b"on-premises" in response.content
    assert not ApiKey.objects.exists()


def test_the_binding_is_read_only_in_the_console(console: Client, sensitive_key: IssuedKey) -> None:
    url = reverse("admin:teams_apikey_change", args=[sensitive_key.api_key.pk])
    page = console.get(url)
    assert b'name="system_prompt"' not in page.content and b'name="classification"' not in page.content
    assert b'name="expires_at' in page.content
    # A crafted POST with bound fields changes nothing.
    console.post(url, {"system_prompt": "Rebound", "classification": "non_sensitive", "expires_at_0": "", "expires_at_1": ""})
    api_key = ApiKey.objects.get(pk=sensitive_key.api_key.pk)
    assert api_key.system_prompt != "Rebound" and api_key.classification == "sensitive"


def test_keys_cannot_be_added_or_deleted_in_the_console(console: Client, sensitive_key: IssuedKey) -> None:
    assert console.get(reverse("admin:teams_apikey_add")).status_code == 403
    assert console.get(reverse("admin:teams_apikey_delete", args=[sensitive_key.api_key.pk])).status_code == 403


def test_the_revoke_action_revokes_and_audits(console: Client, sensitive_key: IssuedKey) -> None:
    response = console.post(
        reverse("admin:teams_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [sensitive_key.api_key.pk]},
    )
    assert response.status_code == 302
    assert api_key_authenticate(sensitive_key.plaintext) is None
    assert AuditEvent.objects.filter(event_type="key_revoked", actor="alice").count() == 1
