"""The console: alerts are listed and acknowledged by a person; webhook secrets are generated."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from alerts.models import Alert, AlertKind, WebhookEndpoint
from alerts.services import alert_acknowledge, alert_fire
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(approver) -> Client:
    client = Client()
    client.force_login(approver)
    return client


def fire(title: str) -> Alert:
    alert = alert_fire(kind=AlertKind.DLP_BLOCKS, title=title, subject="key:9", key_id=9)
    assert alert is not None
    return alert


def test_alerts_are_listed_and_a_person_acknowledges_them(console: Client, approver) -> None:
    first, second = fire("5 DLP blocks for key 'triage' within 10 min"), fire("6 DLP blocks for key 'intake' within 10 min")
    changelist = reverse("admin:alerts_alert_changelist")
    page = console.get(changelist)
    assert page.status_code == 200
    assert "5 DLP blocks for key &#x27;triage&#x27;" in page.content.decode()
    assert "6 DLP blocks for key &#x27;intake&#x27;" in page.content.decode()
    # The dashboard on the index points at what nobody has looked at yet.
    assert "2 unacknowledged alerts" in console.get(reverse("admin:index")).content.decode()

    response = console.post(changelist, {"action": "acknowledge_selected", "_selected_action": [first.pk]}, follow=True)
    assert response.status_code == 200 and "Acknowledged 1 alert(s)." in response.content.decode()
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.acknowledged_by == approver and first.acknowledged_at is not None
    assert second.acknowledged_at is None
    event = AuditEvent.objects.get(event_type="alert_acknowledged")
    assert event.detail["alert"] == first.pk and event.actor == approver.username
    unacknowledged = console.get(changelist, {"acknowledged_at__isempty": "1"}).content.decode()
    assert "intake" in unacknowledged and "triage" not in unacknowledged


def test_acknowledging_twice_keeps_the_first_person(approver, django_user_model) -> None:
    bob = django_user_model.objects.create_user(username="bob", password="bob-pass-123", is_staff=True)
    alert = fire("5 DLP blocks")
    on_bobs_screen = Alert.objects.get(pk=alert.pk)  # loaded before alice acknowledged it
    alert_acknowledge(alert=alert, by=approver, note="Looked at it: a test suite.")
    answer = alert_acknowledge(alert=on_bobs_screen, by=bob, note="me too")
    assert (answer.acknowledged_by, answer.acknowledge_note) == (approver, "Looked at it: a test suite.")
    alert.refresh_from_db()
    assert (alert.acknowledged_by, alert.acknowledge_note) == (approver, "Looked at it: a test suite.")
    assert AuditEvent.objects.filter(event_type="alert_acknowledged").count() == 1


def test_alerts_cannot_be_edited_or_deleted_in_the_console(console: Client) -> None:
    alert = fire("5 DLP blocks")
    change = reverse("admin:alerts_alert_change", args=[alert.pk])
    console.post(change, {"title": "nothing happened"})
    alert.refresh_from_db()
    assert alert.title == "5 DLP blocks"
    assert console.get(reverse("admin:alerts_alert_delete", args=[alert.pk])).status_code == 403


def test_a_webhook_endpoint_created_in_the_console_gets_a_secret(console: Client) -> None:
    response = console.post(
        reverse("admin:alerts_webhookendpoint_add"),
        {"name": "SOC", "url": "https://soc.example.com/hooks", "kinds": ["auth_failures", "dlp_blocks"], "is_active": "on"},
    )
    assert response.status_code == 302, response.content
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret.startswith("whsec_") and len(endpoint.secret) > 40
    assert endpoint.kinds == ["auth_failures", "dlp_blocks"]
    assert AuditEvent.objects.filter(event_type="webhook_created").exists()
    page = console.get(reverse("admin:alerts_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert endpoint.secret in page and "Synapse-Signature" in page


def test_the_alert_page_has_nothing_to_edit_and_acknowledges_with_a_note(console: Client, approver) -> None:
    alert = fire("5 DLP blocks for key 'triage' within 10 min")
    url = reverse("admin:alerts_alert_change", args=[alert.pk])
    page = console.get(url).content.decode()
    assert 'name="dedupe_key"' not in page and 'name="_save"' not in page
    assert 'id="acknowledge-form"' in page
    # The link to the requests behind it: the key, the refusal kind, the days it covers.
    assert 'id="alert-requests"' in page and "key_id=9" in page and "decision=blocked_dlp" in page
    response = console.post(reverse("admin:alerts_alert_acknowledge", args=[alert.pk]), {"note": "expected: load test"})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_by == approver and alert.acknowledge_note == "expected: load test"
    row = AuditEvent.objects.get(event_type="alert_acknowledged")
    assert row.actor == "alice" and row.detail["note"] == "expected: load test"
    assert 'id="acknowledge-form"' not in console.get(url).content.decode()
    # A GET never acknowledges.
    other = fire("6 DLP blocks for key 'intake' within 10 min")
    assert console.get(reverse("admin:alerts_alert_acknowledge", args=[other.pk])).status_code == 403
    assert Alert.objects.get(pk=other.pk).acknowledged_at is None


def test_the_requests_link_opens_the_filtered_audit_list(console: Client) -> None:
    from alerts.admin import alert_requests_url

    alert = fire("5 DLP blocks")
    assert console.get(alert_requests_url(alert)).status_code == 200
