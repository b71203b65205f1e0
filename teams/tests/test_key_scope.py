"""The per-request key read: raw SQL, yet every value typed as the ORM gives it, on both databases."""

from __future__ import annotations

from dataclasses import fields
from datetime import time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from teams.models import ApiKey, Team
from teams.selectors import KeyScope, api_key_authenticate
from teams.services import api_key_issue, team_update

pytestmark = pytest.mark.django_db


@pytest.mark.sqlite
def test_the_scope_carries_the_keys_binding_and_the_teams_settings(team: Team, routing: None, approver: Any) -> None:
    team_update(
        team=team,
        changes={
            "rpm": 600, "tpm": 90000, "budget": Decimal("1500.25"), "budget_period": "week", "time_zone": "Europe/Paris",
            "business_hours_start": time(7, 30), "business_hours_end": time(19), "business_days": "12345",
        },
    )  # fmt: skip
    issued = api_key_issue(
        team=team, name="Claims", system_prompt="Be careful.", models=["mock-small"], classification="sensitive",
        rpm=60, tpm=6000, max_tokens=512, max_messages=20, max_prompt_tokens=4000, budget=Decimal("12.50"),
        enforcement="monitor", expires_at=timezone.now() + timedelta(days=1), approved_by=approver,
    )  # fmt: skip

    scope = api_key_authenticate(issued.plaintext)

    key = ApiKey.objects.get(pk=issued.api_key.pk)
    expected = KeyScope(
        key_id=key.pk, lookup_id=key.lookup_id, name="Claims", team_id=team.pk, team_name="claims",
        classification="sensitive", system_prompt="Be careful.", rpm=60, tpm=6000, max_tokens=512,
        approved_by=approver.username, enforcement="monitor", max_messages=20, max_prompt_tokens=4000,
        budget=Decimal("12.50"), team_rpm=600, team_tpm=90000, team_budget=Decimal("1500.25"),
        budget_period="week", time_zone="Europe/Paris", business_hours=(time(7, 30), time(19), "12345"),
    )  # fmt: skip
    assert scope == expected
    assert all(type(getattr(scope, f.name)) is type(getattr(expected, f.name)) for f in fields(KeyScope))


@pytest.mark.sqlite
def test_a_key_without_approver_or_limits_reads_as_empty(team: Team, routing: None) -> None:
    issued = api_key_issue(team=team, name="Open", system_prompt="p", models=["mock-small"], classification="non_sensitive")

    scope = api_key_authenticate(issued.plaintext)

    assert scope is not None
    assert (scope.approved_by, scope.budget, scope.team_budget, scope.rpm) == ("", None, None, None)


@pytest.mark.sqlite
def test_an_expired_key_is_refused(team: Team, routing: None) -> None:
    issued = api_key_issue(
        team=team, name="Soon", system_prompt="p", models=["mock-small"], classification="non_sensitive",
        expires_at=timezone.now() + timedelta(days=1),
    )  # fmt: skip
    ApiKey.objects.filter(pk=issued.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert api_key_authenticate(issued.plaintext) is None
