"""Policy writes: validated, versioned and audited; packs install idempotently and upgrade visibly."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from dlp.models import Pattern, PolicyVersion, TeamOverride
from dlp.packfile import PackError, load_pack
from dlp.selectors import dlp_policy
from dlp.services import pack_apply, pattern_create, pattern_delete, pattern_update, team_override_set
from teams.models import Team

from .helpers import policy_events, policy_version

pytestmark = pytest.mark.django_db

TICKET = r"\bTICKET-(?P<value>\d{6})\b"


def make_pattern(**changes: object) -> Pattern:
    values: dict[str, object] = {"name": "ticket", "category": "ticket_id", "expression": TICKET, "action": "redact"}
    return pattern_create(**{**values, **changes})  # type: ignore[arg-type]  # test fixtures pass loose keyword bundles


def scan_prompt(text: str, *, team_id: int | None = None) -> list[tuple[str, str, str]]:
    policy = dlp_policy(team_id=team_id)
    return [(h.pattern, h.category, h.action) for h in policy.prompt.scan(text, overrides=policy.overrides).hits]


@pytest.mark.sqlite
def test_the_baseline_pack_is_installed_by_migration() -> None:
    baseline = load_pack("baseline")
    installed = Pattern.objects.filter(pack="baseline")
    assert sorted(installed.values_list("name", flat=True)) == sorted(p.spec.name for p in baseline.patterns)
    assert all(p.enabled and p.pack_version == baseline.version for p in installed)
    assert policy_version() >= 1
    # Out of the box: credentials are refused, identifiers redacted, an ordinary prompt passes.
    assert scan_prompt("deploy with AKIAQYLPMN5HHHFPZAM2 please") == [("baseline.aws_access_key_id", "AWS_CREDENTIAL", "block")]
    assert scan_prompt("card 4111 1111 1111 1111") == [("baseline.credit_card", "CREDIT_CARD", "redact")]
    assert scan_prompt("Summarise the attached claim in three bullet points, please.") == []


@pytest.mark.sqlite
def test_it_creates_a_pattern_bumps_the_version_and_audits_it(approver) -> None:
    before = policy_version()
    pattern = make_pattern(actor=approver)
    assert pattern.category == "TICKET_ID"  # categories are upper case, as in [REDACTED:TICKET_ID]
    assert policy_version() == before + 1
    event = policy_events()[-1]
    assert event["actor"] == "alice" and event["change"] == "pattern_created" and event["pattern"] == "ticket"
    assert event["policy_version"] == before + 1 and event["expression"] == TICKET
    assert scan_prompt("see TICKET-123456") == [("ticket", "TICKET_ID", "redact")]


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        (r"(?<=card )\d{16}", "invalid perl operator: (?<"),
        (r"(a)\1", "invalid escape sequence: \\1"),
        (r"[0-9", "missing ]: [0-9"),
        (r"x*", "match the empty string"),
    ],
)
def test_it_refuses_an_expression_re2_cannot_compile(expression: str, reason: str) -> None:
    before = policy_version()
    with pytest.raises(ValidationError) as excinfo:
        make_pattern(expression=expression)
    assert reason in " ".join(excinfo.value.message_dict["expression"])
    assert not Pattern.objects.filter(name="ticket").exists()
    assert policy_version() == before and policy_events() == []


def test_it_refuses_an_unknown_validator() -> None:
    with pytest.raises(ValidationError) as excinfo:
        make_pattern(validator="crc64")
    assert "crc64" in " ".join(excinfo.value.message_dict["validator"])
    assert not Pattern.objects.filter(name="ticket").exists()


def test_it_refuses_an_invalid_edit_and_keeps_the_pattern(approver) -> None:
    pattern = make_pattern()
    version = policy_version()
    with pytest.raises(ValidationError) as excinfo:
        pattern_update(pattern=pattern, changes={"expression": r"TICKET-(?!0)\d+"}, actor=approver)
    assert "invalid perl operator" in " ".join(excinfo.value.message_dict["expression"])
    pattern.refresh_from_db()
    assert pattern.expression == TICKET and policy_version() == version
    with pytest.raises(ValidationError):
        pattern_update(pattern=pattern, changes={"name": "renamed"}, actor=approver)


def test_it_records_what_an_edit_changed(approver) -> None:
    pattern = make_pattern()
    version = policy_version()
    pattern_update(pattern=pattern, changes={"action": "block", "severity": "medium"}, actor=approver)
    event = policy_events()[-1]
    assert event["change"] == "pattern_changed" and event["changed"] == {"action": ["redact", "block"]}
    assert policy_version() == version + 1
    assert scan_prompt("TICKET-123456") == [("ticket", "TICKET_ID", "block")]
    # Saving without a difference is not a change: no version, no audit row.
    pattern_update(pattern=pattern, changes={"action": "block"}, actor=approver)
    assert policy_version() == version + 1 and len(policy_events()) == 2


def test_a_disabled_pattern_is_not_scanned() -> None:
    pattern = make_pattern()
    pattern_update(pattern=pattern, changes={"enabled": False})
    assert scan_prompt("TICKET-123456") == []


def test_it_scans_each_direction_with_its_own_patterns() -> None:
    make_pattern(applies_to="response")
    policy = dlp_policy(team_id=None)
    assert not policy.prompt.scan("TICKET-123456").hits
    assert [h.pattern for h in policy.response.scan("TICKET-123456").hits] == ["ticket"]


def test_it_deletes_a_pattern_with_its_overrides(team: Team, approver) -> None:
    pattern = make_pattern()
    team_override_set(team=team, pattern=pattern, action="off")
    pattern_delete(pattern=pattern, actor=approver)
    assert not Pattern.objects.filter(name="ticket").exists() and not TeamOverride.objects.exists()
    event = policy_events()[-1]
    assert event["change"] == "pattern_deleted" and event["overrides_removed"] == 1 and event["actor"] == "alice"
    assert scan_prompt("TICKET-123456") == []


def test_a_team_override_changes_the_action_for_that_team_only(team: Team, approver) -> None:
    other = Team.objects.create(name="marketing", owner_email="m@example.com")
    pattern = make_pattern()
    team_override_set(team=team, pattern=pattern, action="block", actor=approver)
    assert scan_prompt("TICKET-123456", team_id=team.pk) == [("ticket", "TICKET_ID", "block")]
    assert scan_prompt("TICKET-123456", team_id=other.pk) == [("ticket", "TICKET_ID", "redact")]
    assert scan_prompt("TICKET-123456", team_id=None) == [("ticket", "TICKET_ID", "redact")]
    event = policy_events()[-1]
    assert event["change"] == "team_override_set" and event["team"] == "claims" and event["action"] == [None, "block"]

    team_override_set(team=team, pattern=pattern, action="off", actor=approver)
    assert dlp_policy(team_id=team.pk).overrides == {"ticket": "off"}
    assert scan_prompt("TICKET-123456", team_id=team.pk) == []
    assert TeamOverride.objects.get().action == "off"

    team_override_set(team=team, pattern=pattern, action=None, actor=approver)
    assert not TeamOverride.objects.exists()
    assert scan_prompt("TICKET-123456", team_id=team.pk) == [("ticket", "TICKET_ID", "redact")]
    assert [e["change"] for e in policy_events()][-3:] == ["team_override_set", "team_override_set", "team_override_removed"]


def test_it_refuses_an_unknown_override_action(team: Team) -> None:
    with pytest.raises(ValidationError):
        team_override_set(team=team, pattern=make_pattern(), action="quarantine")
    assert not TeamOverride.objects.exists()


# ── packs ──


def test_applying_a_pack_installs_it_and_reapplying_changes_nothing(approver) -> None:
    gdpr = load_pack("gdpr")
    version = policy_version()
    diff = pack_apply(name_or_path="gdpr", actor=approver)
    assert diff.applied and diff.installed_version is None and diff.version == gdpr.version
    assert sorted(diff.added) == sorted(p.spec.name for p in gdpr.patterns) and not diff.changed and not diff.disabled
    assert Pattern.objects.filter(pack="gdpr", enabled=True).count() == len(gdpr.patterns)
    assert policy_version() == version + 1
    event = policy_events()[-1]
    assert event["change"] == "pack_applied" and event["pack"] == "gdpr" and event["actor"] == "alice"
    assert sorted(event["added"]) == sorted(diff.added)
    assert scan_prompt("Mail jane.doe@example.org") == [
        ("baseline.email", "EMAIL", "alert"),
        ("gdpr.email", "EMAIL", "redact"),
    ]

    again = pack_apply(name_or_path="gdpr", actor=approver)
    assert not again.has_changes and not again.added and not again.changed
    assert sorted(again.unchanged) == sorted(diff.added)
    assert policy_version() == version + 1 and len(policy_events()) == 1
    assert "nothing to do" in again.summary()


def test_reapplying_a_pack_sets_edited_patterns_back(approver) -> None:
    email = Pattern.objects.get(name="baseline.email")
    pattern_update(pattern=email, changes={"action": "block", "enabled": False}, actor=approver)
    preview = pack_apply(name_or_path="baseline", dry_run=True)
    assert not preview.applied
    assert [(c.name, c.fields) for c in preview.changed] == [
        ("baseline.email", {"action": ("block", "alert"), "enabled": (False, True)})
    ]
    assert Pattern.objects.get(name="baseline.email").action == "block"  # a dry run writes nothing
    pack_apply(name_or_path="baseline", actor=approver)
    email.refresh_from_db()
    assert (email.action, email.enabled) == ("alert", True)


ACME_V1 = """
pack: acme
version: 1
title: Acme internal identifiers
description: Internal ids that must not leave.
patterns:
  - {name: employee_id, category: EMPLOYEE_ID, expression: '\\bEMP-\\d{6}\\b', action: redact, basis: HR policy 4.2}
  - {name: project_code, category: PROJECT, expression: '\\bPRJ-[A-Z]{4}\\b', action: alert}
  - {use: email, action: redact}
"""
ACME_V2 = """
pack: acme
version: 2
title: Acme internal identifiers
description: Internal ids that must not leave.
patterns:
  - {name: employee_id, category: EMPLOYEE_ID, expression: '\\bEMP-\\d{6}\\b', action: block, basis: HR policy 4.3}
  - {use: email, action: redact}
  - {name: badge, category: BADGE, expression: '\\bBDG\\d{8}\\b', action: redact}
"""


def test_a_pack_upgrade_shows_what_changes(tmp_path: Path, approver) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(ACME_V1)
    pack_apply(name_or_path=str(path), actor=approver)
    team = Team.objects.create(name="hr", owner_email="hr@example.com")
    team_override_set(team=team, pattern=Pattern.objects.get(name="acme.project_code"), action="off")

    path.write_text(ACME_V2)
    preview = pack_apply(name_or_path=str(path), dry_run=True)
    assert (preview.installed_version, preview.version) == (1, 2)
    assert preview.added == ("acme.badge",)
    assert [(c.name, c.fields) for c in preview.changed] == [
        ("acme.employee_id", {"action": ("redact", "block"), "basis": ("HR policy 4.2", "HR policy 4.3")})
    ]
    assert preview.disabled == ("acme.project_code",) and preview.unchanged == ("acme.email",)
    assert preview.lines() == [
        "+ acme.badge",
        "~ acme.employee_id: action 'redact' → 'block'",
        "~ acme.employee_id: basis 'HR policy 4.2' → 'HR policy 4.3'",
        "- acme.project_code (disabled: no longer in the pack)",
    ]
    assert Pattern.objects.filter(pack="acme").count() == 3  # the preview wrote nothing

    diff = pack_apply(name_or_path=str(path), actor=approver)
    assert diff.as_dict() == {**preview.as_dict(), "applied": True}
    rows = {p.name: p for p in Pattern.objects.filter(pack="acme")}
    assert {n: (p.enabled, p.action, p.pack_version) for n, p in rows.items()} == {
        "acme.employee_id": (True, "block", 2),
        "acme.email": (True, "redact", 2),
        "acme.badge": (True, "redact", 2),
        "acme.project_code": (False, "alert", 1),
    }
    assert TeamOverride.objects.filter(pattern__name="acme.project_code").exists()  # disabled, not deleted
    event = policy_events()[-1]
    assert event["installed_version"] == 1 and event["version"] == 2 and event["disabled"] == ["acme.project_code"]
    assert event["changed"] == {"acme.employee_id": {"action": ["redact", "block"], "basis": ["HR policy 4.2", "HR policy 4.3"]}}
    assert scan_prompt("EMP-123456") == [("acme.employee_id", "EMPLOYEE_ID", "block")]
    assert not pack_apply(name_or_path=str(path)).has_changes


def test_it_refuses_a_pack_whose_names_are_taken_by_hand_made_patterns(tmp_path: Path) -> None:
    pattern_create(name="acme.badge", category="BADGE", expression=r"\bBDG\d{8}\b")
    path = tmp_path / "acme.yaml"
    path.write_text(ACME_V2)
    with pytest.raises(ValidationError, match=r"acme\.badge"):
        pack_apply(name_or_path=str(path))
    assert not Pattern.objects.filter(pack="acme").exists()


def test_it_refuses_a_pack_with_an_expression_re2_cannot_compile(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(ACME_V1.replace("\\bPRJ-[A-Z]{4}\\b", "(?<=PRJ-)[A-Z]{4}"))
    with pytest.raises(PackError, match="RE2 refuses the expression"):
        pack_apply(name_or_path=str(path))
    with pytest.raises(PackError, match="no pack named"):
        pack_apply(name_or_path="sox")
    assert not Pattern.objects.filter(pack="acme").exists()


@pytest.mark.sqlite
def test_the_version_row_is_recreated_if_missing() -> None:
    PolicyVersion.objects.all().delete()
    make_pattern()
    assert policy_version() == 1
    assert scan_prompt("TICKET-123456") == [("ticket", "TICKET_ID", "redact")]


def test_it_refuses_an_expression_that_would_hold_every_stream_with_the_reason() -> None:
    with pytest.raises(ValidationError) as excinfo:
        make_pattern(expression=r".*secret")
    assert "Streams cannot be scanned with this expression" in " ".join(excinfo.value.message_dict["expression"])
    assert not Pattern.objects.filter(name="ticket").exists()
