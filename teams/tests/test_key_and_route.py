"""The request's first read: the key and the route of the model it asks for, in one statement,
exactly what the two separate reads give."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from routing.models import Backend, BackendHealth
from routing.selectors import route_for_key
from routing.services import routing_import
from teams.models import ApiKey
from teams.selectors import api_key_authenticate, api_key_authenticate_for
from teams.services import IssuedKey, api_key_revoke

pytestmark = pytest.mark.django_db


def _separately(raw: str, model: str) -> tuple[object, object]:
    scope = api_key_authenticate(raw)
    return scope, route_for_key(key_id=scope.key_id, model=model) if scope is not None else None


@pytest.mark.sqlite
@pytest.mark.parametrize("model", ["gpt-4o-mini", "llama-3-8b", "mock-small", "no-such-model"])
def test_one_statement_reads_what_the_two_reads_give(cloud_key: IssuedKey, model: str) -> None:
    BackendHealth.objects.create(
        backend=Backend.objects.get(name="openai"), consecutive_failures=2, open_until=timezone.now() + timedelta(seconds=9)
    )

    with CaptureQueriesContext(connection) as queries:
        together = api_key_authenticate_for(cloud_key.plaintext, model=model)

    assert together == _separately(cloud_key.plaintext, model)
    assert together[0] is not None
    assert (together[1] is not None) == (model in ("gpt-4o-mini", "llama-3-8b"))  # mock-small: not on the allowlist
    assert len(queries) == 1


@pytest.mark.sqlite
def test_a_model_with_fallbacks_reads_its_chain_in_a_second_statement(cloud_key: IssuedKey) -> None:
    routing_import(
        document={
            "backends": [{"name": "openai", "kind": "openai", "base_url": "https://api.example.com/v1", "location": "cloud"}],
            "models": [
                {"name": "gpt-4o", "backend": "openai"},
                {"name": "gpt-4o-mini", "backend": "openai", "fallbacks": ["gpt-4o"]},
            ],
        }
    )

    with CaptureQueriesContext(connection) as queries:
        scope, route = api_key_authenticate_for(cloud_key.plaintext, model="gpt-4o-mini")

    assert route is not None and [fallback.model for fallback in route.fallbacks] == ["gpt-4o"]
    assert (scope, route) == _separately(cloud_key.plaintext, "gpt-4o-mini")
    assert len(queries) == 2


@pytest.mark.sqlite
def test_a_refused_key_gets_no_route(cloud_key: IssuedKey, sensitive_key: IssuedKey) -> None:
    wrong_secret = cloud_key.plaintext[:-4] + ("0000" if not cloud_key.plaintext.endswith("0000") else "1111")
    unknown = "syn_nosuchlookup_" + "x" * 32
    api_key_revoke(api_key=sensitive_key.api_key)
    expired = ApiKey.objects.filter(pk=cloud_key.api_key.pk)

    for raw in (wrong_secret, unknown, "not-a-key", sensitive_key.plaintext):
        assert api_key_authenticate_for(raw, model="llama-3-8b") == (None, None)
    assert api_key_authenticate_for(cloud_key.plaintext, model="llama-3-8b")[1] is not None
    expired.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api_key_authenticate_for(cloud_key.plaintext, model="llama-3-8b") == (None, None)


@pytest.mark.sqlite
def test_without_a_model_it_is_the_key_alone(cloud_key: IssuedKey) -> None:
    assert api_key_authenticate_for(cloud_key.plaintext, model="") == (api_key_authenticate(cloud_key.plaintext), None)
    assert api_key_authenticate_for(cloud_key.plaintext, model="")[0] is not None
    assert api_key_authenticate_for("", model="") == (None, None)
    assert api_key_authenticate_for("", model="llama-3-8b") == (None, None)
