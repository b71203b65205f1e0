"""The console: read-only for everyone, filters and search that stay fast, the decision chain."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent, Decision
from audit.services import RequestRecord, audit_record_stream_opened
from teams.services import IssuedKey

from .helpers import chat, read_stream

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:audit_auditevent_changelist")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def refused(sensitive_key: IssuedKey) -> AuditEvent:
    chat(sensitive_key.plaintext, model="gpt-4o-mini")
    return AuditEvent.objects.get(event_type="request")


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?event_type__exact=request",
        "?decision=blocked_scope",
        "?status=4xx",
        "?status=403",
        "?team_id=1",
        "?key_id=1",
        "?occurred_at__gte=2020-01-01+00:00:00%2B00:00",
        "?q=req_nothing",
        "?stream_state=unclosed",
    ],
)
def test_every_filter_answers_without_counting_the_whole_table(approver, refused: AuditEvent, query: str) -> None:
    console = client_for(approver)
    with CaptureQueriesContext(connection) as queries:
        assert console.get(CHANGELIST + query).status_code == 200
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper() and "audit_auditevent" in q["sql"]]
    assert counts and all("LIMIT" in sql.upper() for sql in counts)


def test_filters_select_the_right_rows(approver, refused: AuditEvent, sensitive_key: IssuedKey) -> None:
    console = client_for(approver)
    key_id, team_id = sensitive_key.api_key.pk, sensitive_key.api_key.team_id
    cases: list[tuple[dict[str, Any], bool]] = [
        ({"decision": "blocked_scope", "key_id": key_id, "team_id": team_id}, True),
        ({"decision": "allowed"}, False),
        ({"status": "4xx", "event_type__exact": "request"}, True),
        ({"status": "5xx"}, False),
        ({"key_id": key_id + 1000}, False),
    ]
    for query, expected in cases:
        page = console.get(CHANGELIST, query)
        assert (refused.request_id.encode() in page.content) is expected, query


def test_it_offers_every_decision_in_the_filter_monitor_ones_included(approver, refused: AuditEvent) -> None:
    html = client_for(approver).get(CHANGELIST).content.decode()
    for value, label in Decision.choices:
        assert f"?decision={value}" in html and label in html, value
    assert "?decision=monitor_blocked_limit" in html


def test_it_finds_a_request_by_its_id(approver, refused: AuditEvent) -> None:
    console = client_for(approver)
    page = console.get(CHANGELIST, {"q": refused.request_id})
    assert refused.request_id.encode() in page.content
    # A prefix finds it too (the id's own index serves a prefix match); a different id does not.
    assert refused.request_id.encode() in console.get(CHANGELIST, {"q": refused.request_id[:-2]}).content
    assert refused.request_id.encode() not in console.get(CHANGELIST, {"q": refused.request_id[:-2] + "zz"}).content


def test_the_detail_page_shows_the_decision_chain(approver, refused: AuditEvent) -> None:
    page = client_for(approver).get(reverse("admin:audit_auditevent_change", args=[refused.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "<th>scope</th><td>refused</td><td>model_not_allowed: gpt-4o-mini</td>" in html
    assert "<th>key</th><td>passed</td>" in html and "<th>upstream</th><td>not reached</td>" in html
    assert 'name="_save"' not in html  # no save button: nothing to change


def test_no_one_can_add_change_or_delete_an_event(approver, refused: AuditEvent) -> None:
    console = client_for(approver)  # a superuser
    change = reverse("admin:audit_auditevent_change", args=[refused.pk])
    assert console.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert console.post(change, {"actor": "mallory"}).status_code == 403
    assert console.post(reverse("admin:audit_auditevent_delete", args=[refused.pk]), {"post": "yes"}).status_code == 403
    assert console.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [refused.pk]}).status_code == 200
    assert AuditEvent.objects.filter(pk=refused.pk, actor="").exists()


def test_an_auditor_sees_the_audit_log_and_nothing_else(auditor, refused: AuditEvent) -> None:
    console = client_for(auditor)
    assert console.get(CHANGELIST).status_code == 200
    assert console.get(reverse("admin:audit_auditevent_change", args=[refused.pk])).status_code == 200
    assert console.get(reverse("admin:teams_team_changelist")).status_code == 403
    assert console.get(reverse("admin:teams_apikey_changelist")).status_code == 403


def test_other_staff_cannot_read_the_audit_log(django_user_model) -> None:
    staff = django_user_model.objects.create_user(username="bob", password="bob-pass-123", is_staff=True)
    assert client_for(staff).get(CHANGELIST).status_code == 403


def test_console_sessions_are_audited(approver) -> None:
    console = Client(REMOTE_ADDR="10.1.2.3")
    login = reverse("admin:login")
    console.post(login, {"username": "alice", "password": "wrong-password"})
    console.post(login, {"username": "alice", "password": "alice-pass-123"})
    console.post(reverse("admin:logout"))
    rows = list(AuditEvent.objects.order_by("seq").values_list("event_type", "actor", "client_ip"))
    assert rows == [
        ("admin_login_failed", "alice", "10.1.2.3"),
        ("admin_login", "alice", "10.1.2.3"),
        ("admin_logout", "alice", "10.1.2.3"),
    ]
    assert "wrong-password" not in repr(list(AuditEvent.objects.values()))


def test_the_list_puts_decision_and_status_first_with_seconds_and_zone(approver, refused: AuditEvent) -> None:
    from django.utils import timezone

    page = client_for(approver).get(CHANGELIST)
    html = page.content.decode()
    stamp = timezone.localtime(refused.occurred_at).strftime("%Y-%m-%d %H:%M:%S %Z")
    assert stamp in html
    headers = [h for h in ("column-when", "column-decision_label", "column-status", "column-what") if h in html]
    assert headers == ["column-when", "column-decision_label", "column-status", "column-what"]
    assert html.index("column-decision_label") < html.index("column-team_name")
    assert "Select an audit event to view" in html


def test_search_finds_a_partial_request_id_a_team_and_a_key(approver, refused: AuditEvent) -> None:
    console = client_for(approver)
    for term, expected in [
        (refused.request_id[:10], True),
        ("laim", True),  # part of the team name "claims"
        ("summariser", True),  # part of the key name
        ("req_nothing", False),
    ]:
        page = console.get(CHANGELIST, {"q": term})
        assert page.status_code == 200
        assert (refused.request_id.encode() in page.content) is expected, term


def test_the_date_range_filter(approver, refused: AuditEvent) -> None:
    from django.utils import timezone

    console = client_for(approver)
    today = timezone.localdate(refused.occurred_at).isoformat()
    inside = console.get(CHANGELIST, {"occurred_from": today, "occurred_to": today})
    assert refused.request_id.encode() in inside.content
    before = console.get(CHANGELIST, {"occurred_to": "2020-01-01"})
    assert before.status_code == 200 and refused.request_id.encode() not in before.content
    assert b'type="date"' in inside.content


@pytest.mark.sqlite  # JSON containment on PostgreSQL, a text match on SQLite
def test_the_dlp_category_filter(approver, sensitive_key: IssuedKey) -> None:
    from dlp.models import Pattern

    console = client_for(approver)
    chat(sensitive_key.plaintext, content="Card 4111 1111 1111 1111, mail me at jane@example.com")
    row = AuditEvent.objects.filter(event_type="request").latest("seq")
    categories = {finding["category"] for finding in row.dlp}
    assert categories, row.dlp
    found = sorted(categories)[0]
    assert console.get(CHANGELIST, {"dlp_category": found}).content.count(row.request_id.encode()) >= 1
    other = Pattern.objects.exclude(category__in=categories).values_list("category", flat=True).first()
    assert other is not None
    assert row.request_id.encode() not in console.get(CHANGELIST, {"dlp_category": other}).content


def test_export_streams_the_filtered_view_and_is_audited(approver, refused: AuditEvent, sensitive_key: IssuedKey) -> None:
    import csv
    import io
    import json

    console = client_for(approver)
    export = reverse("admin:audit_auditevent_export")
    response = console.get(export, {"format": "csv", "event_type__exact": "request"})
    assert response.status_code == 200 and response.streaming
    rows = list(csv.DictReader(io.StringIO(response.getvalue().decode())))
    assert [r["request_id"] for r in rows] == [refused.request_id]
    lines = console.get(export, {"format": "jsonl"}).getvalue().decode().splitlines()
    assert {json.loads(line)["event_type"] for line in lines} >= {"request", "key_issued"}
    exported = AuditEvent.objects.filter(event_type="audit_exported").order_by("seq")
    assert [e.detail["format"] for e in exported] == ["csv", "jsonl"]
    assert exported[0].actor == "alice" and exported[0].detail["filters"] == {"event_type__exact": "request"}


def test_governance_rows_read_as_a_change_not_raw_json(approver, sensitive_key: IssuedKey) -> None:
    from teams.services import team_update

    team_update(team=sensitive_key.api_key.team, changes={"rpm": 60}, actor=approver)
    row = AuditEvent.objects.get(event_type="team_changed")
    page = client_for(approver).get(reverse("admin:audit_auditevent_change", args=[row.pk]))
    html = page.content.decode()
    assert "<th>rpm</th><td>None → 60</td>" in html
    assert "Decision chain" not in html and "upstream_latency_ms" not in html


def test_the_unclosed_stream_filter_lists_streams_whose_worker_died(approver, sensitive_key: IssuedKey) -> None:
    read_stream(chat(sensitive_key.plaintext, stream=True))  # opened and closed
    lost = RequestRecord(
        request_id="req_worker_died", occurred_at=timezone.now(), endpoint="chat.completions", status=200,
        decision=Decision.ALLOWED, stream=True,
    )  # fmt: skip
    audit_record_stream_opened(record=lost)
    closed = AuditEvent.objects.get(event_type="request").request_id
    console = client_for(approver)
    page = console.get(CHANGELIST, {"stream_state": "unclosed"}).content
    assert b"req_worker_died" in page and closed.encode() not in page
    assert closed.encode() in console.get(CHANGELIST).content
