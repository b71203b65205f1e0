"""The DLP console: edits go through the services (validated, audited), packs apply with one
click and show their diff, and the tester shows hits, highlighted spans and the redaction."""

from __future__ import annotations

import logging

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from dlp.models import Pattern, TeamOverride
from dlp.packfile import load_pack
from dlp.services import pattern_create
from teams.models import Team

from .helpers import policy_events, policy_version

pytestmark = pytest.mark.django_db

CARD = "4111 1111 1111 1111"


@pytest.fixture
def console(approver) -> Client:
    client = Client()
    client.force_login(approver)
    return client


def pattern_form(**changes: str) -> dict[str, str]:
    return {
        "name": "ticket",
        "category": "ticket_id",
        "expression": r"\bTICKET-\d{6}\b",
        "validator": "",
        "action": "redact",
        "severity": "medium",
        "applies_to": "both",
        "enabled": "on",
        "basis": "",
        **changes,
    }


def test_the_pattern_list_filters_by_pack(console: Client) -> None:
    pattern_create(name="ticket", category="TICKET", expression=r"\bTICKET-\d{6}\b")
    url = reverse("admin:dlp_pattern_changelist")
    page = console.get(url, {"pack": "baseline"})
    assert page.status_code == 200
    assert b"baseline.email" in page.content and b">ticket<" not in page.content
    assert reverse("admin:dlp_pattern_tester").encode() in page.content
    assert reverse("admin:dlp_pattern_apply_pack").encode() in page.content
    assert console.get(url, {"action__exact": "block", "q": "aws"}).status_code == 200


def test_it_refuses_an_expression_re2_cannot_compile_with_the_reason(console: Client) -> None:
    version = policy_version()
    response = console.post(reverse("admin:dlp_pattern_add"), pattern_form(expression=r"(?<!\d)\d{6}"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "invalid perl operator: (?<" in " ".join(errors["expression"])
    assert b"RE2 refuses this expression" in response.content
    assert not Pattern.objects.filter(name="ticket").exists() and policy_version() == version


def test_a_pattern_added_and_edited_in_the_console_is_audited(console: Client) -> None:
    response = console.post(reverse("admin:dlp_pattern_add"), pattern_form())
    assert response.status_code == 302
    pattern = Pattern.objects.get(name="ticket")
    assert (pattern.category, pattern.pack) == ("TICKET_ID", "")
    url = reverse("admin:dlp_pattern_change", args=[pattern.pk])
    response = console.post(url, pattern_form(action="block", name="ignored"))
    assert response.status_code == 302
    pattern.refresh_from_db()
    assert (pattern.name, pattern.action) == ("ticket", "block")  # the name is read-only
    events = policy_events()
    assert [(e["change"], e["actor"]) for e in events] == [("pattern_created", "alice"), ("pattern_changed", "alice")]
    assert events[1]["changed"] == {"action": ["redact", "block"]}
    # An invalid edit is refused on the form as well.
    response = console.post(url, pattern_form(expression="(unclosed"))
    assert response.status_code == 200 and b"missing )" in response.content
    pattern.refresh_from_db()
    assert pattern.expression == r"\bTICKET-\d{6}\b"


def test_deleting_and_disabling_in_the_console_go_through_the_services(console: Client) -> None:
    pattern = pattern_create(name="ticket", category="TICKET", expression=r"\bTICKET-\d{6}\b")
    changelist = reverse("admin:dlp_pattern_changelist")
    response = console.post(changelist, {"action": "disable_selected", "_selected_action": [pattern.pk]})
    assert response.status_code == 302
    pattern.refresh_from_db()
    assert not pattern.enabled
    response = console.post(reverse("admin:dlp_pattern_delete", args=[pattern.pk]), {"post": "yes"})
    assert response.status_code == 302 and not Pattern.objects.filter(pk=pattern.pk).exists()
    assert [e["change"] for e in policy_events()] == ["pattern_created", "pattern_changed", "pattern_deleted"]


def test_a_team_override_set_in_the_console_is_audited(console: Client, team: Team) -> None:
    pattern = Pattern.objects.get(name="baseline.email")
    response = console.post(reverse("admin:dlp_teamoverride_add"), {"team": team.pk, "pattern": pattern.pk, "action": "block"})
    assert response.status_code == 302
    override = TeamOverride.objects.get()
    assert (override.team, override.pattern, override.action) == (team, pattern, "block")
    response = console.post(reverse("admin:dlp_teamoverride_delete", args=[override.pk]), {"post": "yes"})
    assert response.status_code == 302 and not TeamOverride.objects.exists()
    events = policy_events()
    assert [(e["change"], e["team"], e["action"]) for e in events] == [
        ("team_override_set", "claims", [None, "block"]),
        ("team_override_removed", "claims", ["block", None]),
    ]


def test_applying_a_pack_takes_one_click_and_shows_the_diff(console: Client) -> None:
    url = reverse("admin:dlp_pattern_apply_pack")
    page = console.get(url)
    assert page.status_code == 200
    for name in ("gdpr", "hipaa", "pci-dss"):
        assert f'value="Apply {name}"'.encode() in page.content
    assert b"pack baseline v1 is installed and unchanged" in page.content
    assert b"pack gdpr (not installed" in page.content and b"would apply" in page.content
    assert not Pattern.objects.filter(pack="gdpr").exists()  # looking writes nothing

    response = console.post(url, {"pack": "gdpr"})
    assert response.status_code == 200
    applied = response.context["applied"]
    gdpr = load_pack("gdpr")
    assert applied.applied and len(applied.added) == len(gdpr.patterns)
    assert b"+ gdpr.email" in response.content
    assert Pattern.objects.filter(pack="gdpr", enabled=True).count() == len(gdpr.patterns)
    assert policy_events()[-1]["change"] == "pack_applied" and policy_events()[-1]["actor"] == "alice"

    again = console.post(url, {"pack": "gdpr"})
    assert not again.context["applied"].has_changes
    assert len(policy_events()) == 1
    assert console.post(url, {"pack": "../../etc/passwd"}).context["applied"] is None


def test_the_apply_pack_page_needs_permission(client: Client, django_user_model) -> None:
    viewer = django_user_model.objects.create_user(username="val", password="x-pass-123456", is_staff=True)
    client.force_login(viewer)
    assert client.post(reverse("admin:dlp_pattern_apply_pack"), {"pack": "gdpr"}).status_code == 403
    assert client.post(reverse("admin:dlp_pattern_tester"), {"text": CARD, "direction": "prompt"}).status_code == 403
    assert not Pattern.objects.filter(pack="gdpr").exists()


def test_the_tester_highlights_hits_escapes_the_text_and_redacts(console: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    text = f'<script>alert("x")</script> pay with {CARD} or mail bob@example.com & AKIAQYLPMN5HHHFPZAM2'
    audit_rows = AuditEvent.objects.count()
    response = console.post(reverse("admin:dlp_pattern_tester"), {"text": text, "direction": "prompt"})
    assert response.status_code == 200
    result = response.context["result"]
    assert [(h.category, h.pattern, h.action) for h in result.hits] == [
        ("CREDIT_CARD", "baseline.credit_card", "redact"),
        ("EMAIL", "baseline.email", "alert"),
        ("AWS_CREDENTIAL", "baseline.aws_access_key_id", "block"),
    ]
    assert result.action == "block"
    body = response.content.decode()
    highlighted = body[body.index('id="dlp-highlighted"') : body.index('id="dlp-redacted"')]
    assert '<script>alert("x")' not in body  # the pasted markup never reaches the page as markup
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in highlighted
    assert f'<mark class="dlp-redact" title="CREDIT_CARD (baseline.credit_card: redact)">{CARD}</mark>' in highlighted
    assert '<mark class="dlp-alert" title="EMAIL (baseline.email: alert)">bob@example.com</mark>' in highlighted
    key_title = "AWS_CREDENTIAL (baseline.aws_access_key_id: block)"
    assert f'<mark class="dlp-block" title="{key_title}">AKIAQYLPMN5HHHFPZAM2</mark>' in highlighted
    assert " &amp; " in highlighted
    redacted = body[body.index('id="dlp-redacted"') :]
    assert (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; pay with [REDACTED:CREDIT_CARD] or mail bob@example.com "
        "&amp; [REDACTED:AWS_CREDENTIAL]" in redacted
    )
    assert "After redaction (the gateway would refuse this text)" in body
    # Neither stored nor logged.
    assert AuditEvent.objects.count() == audit_rows
    assert not any(CARD in r.getMessage() or "bob@example.com" in r.getMessage() for r in caplog.records)


def test_the_tester_applies_a_teams_overrides_and_the_direction(console: Client, team: Team) -> None:
    from dlp.services import team_override_set

    team_override_set(team=team, pattern=Pattern.objects.get(name="baseline.credit_card"), action="off")
    url = reverse("admin:dlp_pattern_tester")
    response = console.post(url, {"text": f"card {CARD}", "direction": "prompt", "team": team.pk})
    assert response.context["result"].hits == () and b"No pattern hits" in response.content
    pattern_create(name="answer", category="ANSWER", expression=r"\b42\b", applies_to="response", action="alert")
    as_prompt = console.post(url, {"text": "it is 42", "direction": "prompt"}).context["result"]
    as_response = console.post(url, {"text": "it is 42", "direction": "response"}).context["result"]
    assert as_prompt.hits == () and [h.pattern for h in as_response.hits] == ["answer"]


def test_overlapping_hits_are_highlighted_piece_by_piece(console: Client) -> None:
    pattern_create(name="digits4", category="DIGITS", expression=r"\b\d{4} \d{4}\b", action="alert")
    response = console.post(reverse("admin:dlp_pattern_tester"), {"text": f"x {CARD} y", "direction": "prompt"})
    segments = [(s.text, s.action) for s in response.context["result"].segments]
    assert "".join(t for t, _ in segments) == f"x {CARD} y"
    assert segments[0] == ("x ", "") and segments[-1] == (" y", "")
    assert ("4111 1111", "redact") in segments and all(a in ("", "redact") for _, a in segments)


def test_it_refuses_an_expression_that_would_hold_every_stream_with_the_reason(console: Client) -> None:
    response = console.post(reverse("admin:dlp_pattern_add"), pattern_form(expression=r"[A-Za-z ]+secret"))
    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors["expression"])
    assert "Streams cannot be scanned with this expression" in errors and "hold back" in errors
    assert not Pattern.objects.filter(name="ticket").exists()
