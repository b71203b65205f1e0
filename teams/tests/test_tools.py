"""A key's tool policy: matching (tool_allowed), parsing, issuance and the seal."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import DatabaseError, transaction
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from teams.models import ApiKey, Classification, Team
from teams.selectors import api_key_authenticate
from teams.services import IssuedKey, api_key_issue
from teams.tools import parse_tool_patterns, server_may_match, tool_allowed


@pytest.mark.parametrize(
    ("patterns", "name", "allowed"),
    [
        (("crm__lookup_customer",), "crm__lookup_customer", True),
        (("crm__lookup_customer",), "crm__lookup_customers", False),  # whole-name match
        (("crm__lookup_customer",), "CRM__lookup_customer", False),  # case-sensitive
        (("docs__*",), "docs__search", True),
        (("docs__*",), "docs-eu__search", False),
        (("docs__*",), "crm__search", False),
        (("*__search",), "docs__search", True),
        (("crm__get_?",), "crm__get_a", True),
        (("crm__get_?",), "crm__get_ab", False),
        (("crm__[ab]*",), "crm__all", True),
        (("crm__[!ab]*",), "crm__all", False),
        (("crm__x", "docs__*"), "docs__read", True),
        (("get_weather",), "get_weather", True),  # a /v1 function tool
        ((), "anything", True),  # no tool policy
    ],
)
def test_tool_allowed(patterns: tuple[str, ...], name: str, allowed: bool) -> None:
    assert tool_allowed(patterns, name) is allowed


def test_it_parses_validates_and_deduplicates_patterns() -> None:
    assert parse_tool_patterns(" crm__lookup_customer, docs__* ,,crm__lookup_customer") == ("crm__lookup_customer", "docs__*")
    assert parse_tool_patterns("") == ()
    for bad in ("crm lookup", "crm__x;drop", "crm__[ab", "x" * 161, "crm/x"):
        with pytest.raises(ValueError, match=r"is not a tool name or glob|unclosed"):
            parse_tool_patterns(bad)


def test_server_may_match_skips_servers_no_pattern_can_reach() -> None:
    assert server_may_match(("crm__lookup",), "crm")
    assert not server_may_match(("crm__lookup",), "docs")
    assert not server_may_match(("crm__lookup", "get_weather"), "docs")
    assert server_may_match(("*__search",), "docs")
    assert server_may_match(("d?cs__*",), "docs")


@pytest.mark.django_db
def test_issued_tools_are_bound_scoped_and_audited(team: Team, routing: None) -> None:
    issued = api_key_issue(
        team=team,
        name="Agent",
        system_prompt="p",
        models=["mock-small"],
        classification=Classification.NON_SENSITIVE,
        tools="crm__lookup_customer, docs__*",
    )
    scope = api_key_authenticate(issued.plaintext)
    assert scope is not None and scope.tools == ("crm__lookup_customer", "docs__*")
    event = AuditEvent.objects.get(event_type="key_issued", key_id=issued.api_key.pk)
    assert event.detail["tools"] == ["crm__lookup_customer", "docs__*"]


@pytest.mark.django_db
def test_a_key_without_tools_has_no_tool_policy(sensitive_key: IssuedKey) -> None:
    scope = api_key_authenticate(sensitive_key.plaintext)
    assert scope is not None and scope.tools is None


@pytest.mark.django_db
def test_it_refuses_a_malformed_pattern(team: Team, routing: None) -> None:
    with pytest.raises(ValidationError, match="not a tool name"):
        api_key_issue(team=team, name="x", system_prompt="p", models=["mock-small"], classification="non_sensitive", tools="a b")
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_issue_key_takes_tools(team: Team, routing: None, capsys: pytest.CaptureFixture[str]) -> None:
    call_command(
        "issue_key", "--team", team.name, "--name", "Agent", "--models", "mock-small", "--classification",
        "non_sensitive", "--system-prompt", "p", "--tools", "crm__*,docs__search", "--json",
    )  # fmt: skip
    assert '"tools": ["crm__*", "docs__search"]' in capsys.readouterr().out
    assert ApiKey.objects.get(name="Agent").tools == "crm__*,docs__search"
    with pytest.raises(CommandError, match="tools: 'crm lookup' is not a tool name"):
        call_command(
            "issue_key", "--team", team.name, "--name", "Bad", "--models", "mock-small", "--classification",
            "non_sensitive", "--system-prompt", "p", "--tools", "crm lookup",
        )  # fmt: skip


@pytest.mark.sqlite
@pytest.mark.django_db
def test_the_database_refuses_to_change_a_keys_tools(team: Team, routing: None) -> None:
    issued = api_key_issue(
        team=team, name="Agent", system_prompt="p", models=["mock-small"], classification="non_sensitive", tools="crm__lookup"
    )
    for value in ("crm__*", ""):
        with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
            ApiKey.objects.filter(pk=issued.api_key.pk).update(tools=value)
    assert ApiKey.objects.get(pk=issued.api_key.pk).tools == "crm__lookup"


@pytest.mark.django_db
def test_the_console_issues_a_key_with_tools(team: Team, routing: None, approver) -> None:
    console = Client()
    console.force_login(approver)
    form = {
        "name": "Agent", "system_prompt": "p", "models": ["mock-small"], "classification": "non_sensitive",
        "enforcement": "enforce", "tools": "crm__lookup_customer, docs__*",
    }  # fmt: skip
    response = console.post(reverse("admin:teams_team_issue_key", args=[team.pk]), form)
    assert response.status_code == 302  # on to the one-time reveal
    assert ApiKey.objects.get(name="Agent").tools == "crm__lookup_customer,docs__*"
    bad = console.post(reverse("admin:teams_team_issue_key", args=[team.pk]), {**form, "name": "Bad", "tools": "a b"})
    assert bad.status_code == 200 and "not a tool name" in str(bad.context["form"].errors["tools"])
