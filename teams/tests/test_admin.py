"""The console: issuing a key shows it once; the binding cannot be edited; revoke works."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from teams.models import ApiKey, Team
from teams.selectors import api_key_authenticate
from teams.services import IssuedKey, api_key_revoke, team_create

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
            "max_concurrent": "4",
        },
    )
    # POST-redirect-GET: the POST issues and redirects; the page it leads to shows the key once.
    assert response.status_code == 302
    api_key = ApiKey.objects.get()
    assert response["Location"] == reverse("admin:teams_apikey_issued", args=[api_key.pk])
    # Between the two, the plaintext is nowhere whole: the session (in the database) holds it
    # masked, the cookie holds the mask.
    from django.contrib.sessions.models import Session

    assert all(api_key.prefix not in str(row.get_decoded()) for row in Session.objects.all())
    reveal = console.get(response["Location"])
    assert reveal.status_code == 200 and "no-store" in reveal["Cache-Control"]
    plaintext = reveal.context["plaintext"]
    assert plaintext.startswith(api_key.prefix) and plaintext.encode() in reveal.content
    assert b"curl " in reveal.content and b"OpenAI(base_url=" in reveal.content
    scope = api_key_authenticate(plaintext)
    assert scope is not None and scope.approved_by == "alice" and scope.max_concurrent == 4
    # Reloading the reveal shows nothing new and issues nothing.
    again = console.get(response["Location"])
    assert again.status_code == 200 and plaintext.encode() not in again.content
    assert b"not shown again" in again.content
    assert ApiKey.objects.count() == 1
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


def _issue(console: Client, team: Team, name: str) -> Any:
    return console.post(
        reverse("admin:teams_team_issue_key", args=[team.pk]),
        {
            "name": name,
            "system_prompt": "Triage.",
            "models": ["mock-small"],
            "classification": "sensitive",
            "enforcement": "enforce",
        },
    )


def test_two_active_keys_cannot_share_a_name_in_one_team(console: Client, team: Team, routing: None) -> None:
    assert _issue(console, team, "Triage bot").status_code == 302
    second = _issue(console, team, "triage bot")
    assert second.status_code == 200
    assert "already has an active key" in str(second.context["form"].errors["name"])
    assert ApiKey.objects.count() == 1
    # Once the first is revoked, the name is free again.
    api_key_revoke(api_key=ApiKey.objects.get(), reason="rotated")
    assert _issue(console, team, "Triage bot").status_code == 302


def test_revoke_from_the_key_page_asks_for_a_reason_and_audits_it(console: Client, sensitive_key: IssuedKey) -> None:
    api_key = sensitive_key.api_key
    page = console.get(reverse("admin:teams_apikey_change", args=[api_key.pk]))
    assert reverse("admin:teams_apikey_revoke", args=[api_key.pk]).encode() in page.content
    url = reverse("admin:teams_apikey_revoke", args=[api_key.pk])
    confirm = console.get(url)
    assert confirm.status_code == 200 and b"Yes, revoke this key" in confirm.content
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is None  # the GET only asks
    refused = console.post(url, {"reason": ""})
    assert refused.status_code == 200 and ApiKey.objects.get(pk=api_key.pk).revoked_at is None
    done = console.post(url, {"reason": "leaked in a support ticket"})
    assert done.status_code == 302
    assert api_key_authenticate(sensitive_key.plaintext) is None
    row = AuditEvent.objects.get(event_type="key_revoked")
    assert row.actor == "alice" and row.detail == {"reason": "leaked in a support ticket"}
    assert ApiKey.objects.get(pk=api_key.pk).revoke_reason == "leaked in a support ticket"


TEAM_FORM = {
    "name": "claims-two",
    "display_name": "Claims two",
    "owner_email": "owner@example.com",
    "budget_period": "month",
    "time_zone": "Europe/Berlin",
    "business_hours_start": "08:00",
    "business_hours_end": "18:00",
    "business_days": ["1", "2", "3", "4", "5"],
}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"time_zone": "Berlin"}, "time_zone", "did you mean Europe/Berlin"),
        ({"time_zone": "Mars/Olympus"}, "time_zone", "not a time zone name"),
        ({"business_days": "Mon-Fri"}, "business_days", "valid choice"),
        ({"business_days": []}, "business_days", "required"),
        ({"budget": "-5"}, "budget", "cannot be negative"),
    ],
)
def test_team_form_errors_are_field_errors_not_500s(
    console: Client, changes: dict[str, object], field: str, message: str
) -> None:
    response = console.post(reverse("admin:teams_team_add"), {**TEAM_FORM, **changes})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in str(errors[field]).replace("&#x27;", "'")
    assert not Team.objects.filter(name="claims-two").exists()


def test_a_new_team_goes_on_to_issue_a_key(console: Client) -> None:
    blank = console.get(reverse("admin:teams_team_add")).context["adminform"].form["business_days"]
    assert [w.data["value"] for w in blank if w.data["selected"]] == ["1", "2", "3", "4", "5"]  # Mon–Fri ticked
    response = console.post(reverse("admin:teams_team_add"), TEAM_FORM)
    team = Team.objects.get(name="claims-two")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:teams_team_issue_key", args=[team.pk])
    assert team.business_days == "12345" and team.time_zone == "Europe/Berlin"
    edit = console.get(reverse("admin:teams_team_change", args=[team.pk]))
    boxes = edit.context["adminform"].form["business_days"]
    assert [w.data["value"] for w in boxes if w.data["selected"]] == ["1", "2", "3", "4", "5"]


def test_deleting_a_team_is_audited_and_a_team_with_keys_is_kept(console: Client, team: Team, sensitive_key: IssuedKey) -> None:
    empty = team_create(name="empty", owner_email="o@example.com")
    response = console.post(reverse("admin:teams_team_delete", args=[empty.pk]), {"post": "yes"})
    assert response.status_code == 302 and not Team.objects.filter(name="empty").exists()
    row = AuditEvent.objects.get(event_type="team_deleted")
    assert row.actor == "alice" and row.team_name == "empty" and row.detail["team"]["name"] == "empty"
    # The team with a key offers no Delete; its delete page is refused; nothing is recorded.
    edit = console.get(reverse("admin:teams_team_change", args=[team.pk])).content.decode()
    assert reverse("admin:teams_team_delete", args=[team.pk]) not in edit
    page = console.get(reverse("admin:teams_team_delete", args=[team.pk]))
    assert page.status_code == 403 and b"permission to delete" not in page.content
    bulk = console.post(
        reverse("admin:teams_team_changelist"), {"action": "delete_selected", "_selected_action": [team.pk], "post": "yes"}
    )
    assert bulk.status_code in (200, 302)
    assert Team.objects.filter(pk=team.pk).exists()
    assert AuditEvent.objects.filter(event_type="team_deleted").count() == 1


def test_console_errors_are_html_with_the_request_id(console: Client) -> None:
    response = console.get("/admin/teams/team/999999/spend/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
    assert response["x-request-id"].encode() in response.content
    api = console.get("/v1/nothing-here")
    assert api.status_code == 404 and api["Content-Type"].startswith("application/json")


def test_the_server_error_page_is_html_in_the_console_and_json_elsewhere(rf) -> None:
    from synapse.errors_views import server_error

    request = rf.get("/admin/teams/team/")
    request.synapse_request_id = "req_abc123"
    page = server_error(request)
    assert page.status_code == 500 and b"req_abc123" in page.content and page["Content-Type"].startswith("text/html")
    api = server_error(rf.get("/v1/chat/completions"))
    assert api["Content-Type"].startswith("application/json")


def test_a_key_issued_row_names_its_approver(team: Team, sensitive_key: IssuedKey) -> None:
    row = AuditEvent.objects.get(event_type="key_issued")
    assert row.actor == "alice" and row.approved_by == "alice"


def test_the_console_is_branded_with_no_view_site_link_and_an_inline_favicon(console: Client) -> None:
    html = console.get(reverse("admin:index")).content.decode()
    assert "Synapse governance console" in html and "Django administration" not in html
    assert "View site" not in html
    assert 'rel="icon" href="data:image/svg+xml' in html


def test_the_dashboard_shows_totals_top_keys_top_dlp_and_an_issue_key_button(console: Client, sensitive_key: IssuedKey) -> None:
    from audit.tests.helpers import chat

    chat(sensitive_key.plaintext)
    chat(sensitive_key.plaintext, content="mail me at jane@example.com")
    html = console.get(reverse("admin:index")).content.decode()
    assert 'id="dashboard-issue-key"' in html
    totals = html[html.index('id="dashboard-totals"') :]
    assert '<th scope="row">Requests</th><td>2</td>' in totals
    top_keys = html[html.index('id="dashboard-top-keys"') :]
    assert "Claims summariser" in top_keys.split("</table>")[0] and "<td>2</td>" in top_keys.split("</table>")[0]
    top_dlp = html[html.index('id="dashboard-top-dlp"') :].split("</table>")[0]
    row = AuditEvent.objects.filter(event_type="request").latest("seq")
    assert row.dlp and row.dlp[0]["category"] in top_dlp


def test_the_reveal_needs_both_halves_in_the_same_browser(console: Client, team: Team, routing: None) -> None:
    response = _issue(console, team, "Half")
    url = response["Location"]
    console.cookies.pop("synapse_reveal")
    page = console.get(url)
    assert page.status_code == 200 and page.context["plaintext"] == ""
    # And the session half was consumed: nothing to show later either.
    assert console.get(url).context["plaintext"] == ""
