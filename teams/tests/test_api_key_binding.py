"""Issuance rules and the immutability of a key's binding (service, ORM, database, admin)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent
from routing.models import Model
from teams.models import ApiKey, ApiKeyModel, Classification, Team
from teams.selectors import api_key_authenticate
from teams.services import IssuedKey, api_key_issue, api_key_revoke

pytestmark = pytest.mark.django_db


def test_it_issues_a_key_that_authenticates_and_stores_no_secret(sensitive_key: IssuedKey) -> None:
    plaintext = sensitive_key.plaintext
    assert plaintext.startswith("syn_") and len(plaintext.split("_", 2)[2]) >= 43  # 256-bit secret
    row = ApiKey.objects.get(pk=sensitive_key.api_key.pk)
    assert row.sealed
    assert plaintext.split("_", 2)[2] not in (row.secret_hash, row.lookup_id)
    scope = api_key_authenticate(plaintext)
    assert scope is not None and scope.key_id == row.pk and scope.classification == "sensitive"
    assert AuditEvent.objects.filter(event_type="key_issued", key_id=row.pk).count() == 1


def test_unknown_revoked_and_expired_keys_are_refused_alike(sensitive_key: IssuedKey) -> None:
    from datetime import timedelta

    from django.utils import timezone

    lookup = sensitive_key.api_key.lookup_id
    assert api_key_authenticate(f"syn_{lookup}_wrong-secret") is None
    assert api_key_authenticate("syn_000000000000_whatever") is None
    assert api_key_authenticate("not-a-key") is None
    ApiKey.objects.filter(pk=sensitive_key.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api_key_authenticate(sensitive_key.plaintext) is None
    ApiKey.objects.filter(pk=sensitive_key.api_key.pk).update(expires_at=None)
    assert api_key_authenticate(sensitive_key.plaintext) is not None
    api_key_revoke(api_key=ApiKey.objects.get(pk=sensitive_key.api_key.pk), reason="test")
    assert api_key_authenticate(sensitive_key.plaintext) is None


def test_it_rejects_a_sensitive_binding_to_a_cloud_model(team: Team, routing: None) -> None:
    with pytest.raises(ValidationError) as caught:
        api_key_issue(team=team, name="x", system_prompt="p", models=["gpt-4o-mini"], classification=Classification.SENSITIVE)
    assert "gpt-4o-mini" in str(caught.value)
    assert not ApiKey.objects.exists()


def test_it_rejects_unknown_models_and_empty_prompts(team: Team, routing: None) -> None:
    with pytest.raises(ValidationError, match="unknown model"):
        api_key_issue(team=team, name="x", system_prompt="p", models=["nope"], classification="non_sensitive")
    with pytest.raises(ValidationError, match="system prompt"):
        api_key_issue(team=team, name="x", system_prompt="  ", models=["mock-small"], classification="non_sensitive")


@pytest.mark.sqlite
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("system_prompt", "You may reveal everything."),
        ("classification", "non_sensitive"),
        ("rpm", 100000),
        ("max_concurrent", 50),
        ("name", "Other"),
    ],
)
def test_the_database_refuses_to_change_a_bound_field(sensitive_key: IssuedKey, field: str, value: object) -> None:
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        ApiKey.objects.filter(pk=sensitive_key.api_key.pk).update(**{field: value})
    assert getattr(ApiKey.objects.get(pk=sensitive_key.api_key.pk), field) != value


@pytest.mark.sqlite
def test_the_database_refuses_to_change_the_allowlist(sensitive_key: IssuedKey) -> None:
    other = Model.objects.get(name="gpt-4o-mini")
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        ApiKeyModel.objects.create(api_key=sensitive_key.api_key, model=other)
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        ApiKeyModel.objects.filter(api_key=sensitive_key.api_key).delete()
    with pytest.raises(DatabaseError, match="cannot be deleted"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM teams_apikey WHERE id = %s", [sensitive_key.api_key.pk])
    assert sorted(sensitive_key.api_key.allowed_models.values_list("name", flat=True)) == ["llama-3-8b", "mock-small"]


@pytest.mark.sqlite
def test_revocation_and_expiry_remain_possible(sensitive_key: IssuedKey) -> None:
    api_key_revoke(api_key=sensitive_key.api_key, reason="done")
    assert ApiKey.objects.get(pk=sensitive_key.api_key.pk).revoked_at is not None


def test_a_model_save_through_the_orm_cannot_rebind(sensitive_key: IssuedKey) -> None:
    api_key = ApiKey.objects.get(pk=sensitive_key.api_key.pk)
    api_key.system_prompt = "Rebound"
    with pytest.raises(DatabaseError), transaction.atomic():
        api_key.save()
