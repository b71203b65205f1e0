"""Kept key scopes (teams/scope_cache.py): read once per worker, checked on every request
against the scope stamp in the statement that holds its limits (PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.cache import caches
from django.db import connection
from django.test import AsyncClient
from django.utils import timezone

from audit.models import AuditEvent
from dlp.services import pack_apply
from routing.models import Backend, BackendHealth, Model, ModelFallback
from synapse.cache import CounterCache
from teams import scope_cache
from teams.models import Classification, Team
from teams.scope_cache import ScopeChangedError, scope_kept, scope_read, scope_stamp_verify
from teams.services import IssuedKey, api_key_issue, api_key_revoke

pytestmark = pytest.mark.django_db

CARD = "4111 1111 1111 1111"


def stamp() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT generation FROM synapse_scope_stamp WHERE id = 1")
        return int(cursor.fetchone()[0])


def chat(key: str, content: str = "hello") -> Any:
    body = {"model": "mock-small", "messages": [{"role": "user", "content": content}]}
    return async_to_sync(AsyncClient().post)(
        "/v1/chat/completions", data=json.dumps(body), content_type="application/json", headers={"authorization": f"Bearer {key}"}
    )


def wrong_secret(raw: str) -> str:
    return raw[:-1] + ("a" if raw[-1] != "a" else "b")


@pytest.fixture
def limited_key(team: Team, routing: None, approver: User) -> IssuedKey:
    return api_key_issue(
        team=team, name="Limited", system_prompt="You answer.", models=["mock-small"],
        classification=Classification.SENSITIVE, approved_by=approver, rpm=1000, tpm=1_000_000, budget=Decimal(100),
    )  # fmt: skip


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys read from the database, in order."""
    seen: list[str] = []
    read = scope_cache.api_key_read_for

    def counted(raw: str, *, model: str) -> Any:
        seen.append(raw)
        return read(raw, model=model)

    monkeypatch.setattr(scope_cache, "api_key_read_for", counted)
    return seen


def test_a_read_scope_is_kept_under_its_stamp_and_found_with_its_secret_only(sensitive_key: IssuedKey) -> None:
    raw = sensitive_key.plaintext
    scope, route = scope_read(raw, model="mock-small")

    kept = scope_kept(raw, model="mock-small")
    assert kept is not None and (kept.scope, kept.route, kept.stamp) == (scope, route, stamp())
    assert scope_kept(wrong_secret(raw), model="mock-small") is None
    assert scope_kept(raw, model="llama-3-8b") is None  # kept per model
    assert scope_kept("not-a-key", model="mock-small") is None


def test_nothing_is_kept_for_an_invalid_key_a_model_off_the_allowlist_or_a_concurrency_slot(
    sensitive_key: IssuedKey, team: Team, approver: User
) -> None:
    assert scope_read(wrong_secret(sensitive_key.plaintext), model="mock-small") == (None, None)
    assert scope_read(sensitive_key.plaintext, model="gpt-4o-mini")[1] is None
    assert scope_kept(sensitive_key.plaintext, model="gpt-4o-mini") is None
    slotted = api_key_issue(
        team=team, name="Slotted", system_prompt="x", models=["mock-small"], classification=Classification.SENSITIVE,
        approved_by=approver, max_concurrent=2,
    )  # fmt: skip
    assert scope_read(slotted.plaintext, model="mock-small")[0] is not None
    assert scope_kept(slotted.plaintext, model="mock-small") is None


def test_a_kept_scope_past_its_expiry_is_not_used(
    team: Team, routing: None, approver: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    expires = timezone.now() + timedelta(hours=1)
    issued = api_key_issue(
        team=team, name="Brief", system_prompt="x", models=["mock-small"], classification=Classification.SENSITIVE,
        approved_by=approver, expires_at=expires,
    )  # fmt: skip
    scope_read(issued.plaintext, model="mock-small")
    assert scope_kept(issued.plaintext, model="mock-small") is not None

    monkeypatch.setattr(timezone, "now", lambda: expires)  # the clock passes it: no write moves the stamp

    assert scope_kept(issued.plaintext, model="mock-small") is None
    assert chat(issued.plaintext).status_code == 401


WRITES: dict[str, Callable[[IssuedKey], object]] = {
    "key revoked": lambda key: api_key_revoke(api_key=key.api_key, reason="withdrawn"),
    # A sealed key's allowlist cannot change: a new key's is written (with the key's row).
    "key issued": lambda key: api_key_issue(
        team=key.api_key.team,
        name="Another",
        system_prompt="x",
        models=["mock-small"],
        classification=Classification.SENSITIVE,
    ),
    "team edited": lambda key: Team.objects.filter(pk=key.api_key.team_id).update(rpm=5),
    "approver renamed": lambda key: User.objects.filter(pk__in=[key.api_key.approved_by_id]).update(username="renamed"),
    "model repointed": lambda key: Model.objects.filter(name="mock-small").update(upstream_model="other"),
    "fallback added": lambda key: ModelFallback.objects.create(
        model=Model.objects.get(name="mock-small"), fallback=Model.objects.get(name="llama-3-8b"), position=1
    ),
    "backend edited": lambda key: Backend.objects.filter(name="mock").update(timeout_seconds=7),
    "backend failing": lambda key: BackendHealth.objects.create(backend=Backend.objects.get(name="mock"), consecutive_failures=1),
}


@pytest.mark.parametrize("write", WRITES)
def test_every_write_to_what_a_scope_is_read_from_moves_the_stamp(sensitive_key: IssuedKey, write: str) -> None:
    before = stamp()
    scope_stamp_verify(before)

    WRITES[write](sensitive_key)

    assert stamp() > before
    with pytest.raises(ScopeChangedError):
        scope_stamp_verify(before)


def test_a_hold_on_a_moved_stamp_holds_nothing(sensitive_key: IssuedKey) -> None:
    counters = caches["counters"]
    assert isinstance(counters, CounterCache)
    at = stamp()
    assert counters.hold([("scope-test", 1, 60.0, 10, False)], stop=True, stamp=at)[0] == [1]

    Team.objects.filter(pk=sensitive_key.api_key.team_id).update(tpm=9)
    with pytest.raises(ScopeChangedError):
        counters.hold([("scope-test", 1, 60.0, 10, False)], stop=True, stamp=at)
    assert counters.get("scope-test") == 1
    assert counters.hold([("scope-test", 1, 60.0, 10, False)], stop=True, stamp=stamp())[0] == [2]


@pytest.mark.parametrize("limited", [True, False], ids=["checked by the holds", "checked on its own"])
def test_the_next_request_on_a_kept_scope_does_not_read_the_key_and_a_revocation_still_holds(
    request: pytest.FixtureRequest, limited: bool, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    issued: IssuedKey = request.getfixturevalue("limited_key" if limited else "sensitive_key")
    stamps: list[int | None] = []
    hold = CounterCache.hold

    def spied(self: Any, counts: Any, **kwargs: Any) -> Any:
        stamps.append(kwargs.get("stamp"))
        return hold(self, counts, **kwargs)

    monkeypatch.setattr(CounterCache, "hold", spied)

    assert chat(issued.plaintext).status_code == 200
    assert all(checked is None for checked in stamps)  # read, in a transaction: nothing to check
    stamps.clear()
    assert chat(issued.plaintext).status_code == 200
    assert reads == [issued.plaintext]  # the second request used the kept scope
    assert stamps == ([stamp()] if limited else [])  # its one hold checked the stamp

    api_key_revoke(api_key=issued.api_key, reason="withdrawn")
    refused = chat(issued.plaintext)

    assert refused.status_code == 401
    assert reads == [issued.plaintext] * 2  # read again once the stamp had moved
    assert scope_kept(issued.plaintext, model="mock-small") is None
    rows = list(AuditEvent.objects.filter(event_type="request").order_by("seq").values_list("status", flat=True))
    assert rows == [200, 200, 401]


def test_a_stale_kept_scope_starts_the_hop_over_with_the_prompt_as_the_client_sent_it(
    limited_key: IssuedKey, reads: list[str], team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack_apply(name_or_path="baseline")
    assert chat(limited_key.plaintext).status_code == 200
    Team.objects.filter(pk=team.pk).update(display_name="Claims (renamed)")  # moves the stamp, changes no scope
    holds: list[str] = []
    hold = CounterCache.hold

    def spied(self: Any, counts: Any, **kwargs: Any) -> Any:
        try:
            result = hold(self, counts, **kwargs)
        except ScopeChangedError:
            holds.append("stale")
            raise
        holds.append("held")
        return result

    monkeypatch.setattr(CounterCache, "hold", spied)

    answer = chat(limited_key.plaintext, f"refund card {CARD} today")

    assert answer.status_code == 200
    assert reads == [limited_key.plaintext] * 2
    assert holds == ["stale", "held"]  # the stale hop held nothing; the restarted one held once
    assert 'said "refund card [REDACTED:CREDIT_CARD] today"' in answer.json()["choices"][0]["message"]["content"]
    row = AuditEvent.objects.filter(event_type="request").latest("seq")
    assert [(f["category"], f["action"]) for f in row.dlp if f["direction"] == "prompt"] == [("CREDIT_CARD", "redact")]
