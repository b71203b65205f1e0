"""In-flight slots against the real counter store: taken, refused, given back, leased."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from synapse.errors import limit_exceeded
from teams import concurrency
from teams.concurrency import concurrency_leases_refresh, concurrency_release
from teams.limits import BreachKind, Reservation, limits_reserve, limits_settle
from teams.models import Team
from teams.selectors import KeyScope, api_key_authenticate
from teams.services import api_key_issue
from tests.waiting import stays_true, wait_until

pytestmark = pytest.mark.django_db


def _key(team: Team, **limits: Any) -> KeyScope:
    issued = api_key_issue(
        team=team,
        name=f"concurrent {uuid.uuid4().hex[:6]}",
        system_prompt="Be brief.",
        models=["mock-small"],
        classification="sensitive",
        **limits,
    )
    scope = api_key_authenticate(issued.plaintext)
    assert scope is not None
    return scope


def _reserve(scope: KeyScope) -> Reservation:
    body = {"model": "mock-small", "messages": [{"role": "user", "content": "hello"}]}
    return limits_reserve(
        scope=scope,
        endpoint="chat.completions",
        body=body,
        model="mock-small",
        input_price_per_mtok=Decimal(0),
        output_price_per_mtok=Decimal(0),
    )


def _settle(reservation: Reservation) -> None:
    limits_settle(reservation, prompt_tokens=1, completion_tokens=1, cost=None, reached_upstream=True)


def test_it_refuses_the_request_past_the_limit_and_admits_one_after_a_settlement(team: Team, routing: None) -> None:
    scope = _key(team, max_concurrent=2)
    first, second, third = _reserve(scope), _reserve(scope), _reserve(scope)
    assert not first.breaches and not second.breaches and first.slot is not None and second.slot is not None
    assert [b.kind for b in third.breaches] == [BreachKind.CONCURRENCY] and third.slot is None
    assert third.headers()["x-ratelimit-remaining-concurrent"] == "0"
    error = limit_exceeded(third.breaches[0])
    assert (error.status, error.code, error.type) == (429, "concurrency_limit_exceeded", "requests")
    assert error.headers["retry-after"] == "1" and "2 requests in flight" in error.message
    _settle(first)
    fourth = _reserve(scope)
    assert not fourth.breaches and fourth.slot is not None and fourth.headers()["x-ratelimit-limit-concurrent"] == "2"
    _settle(fourth)
    _settle(fourth)  # settling twice gives back nothing more
    assert not _reserve(scope).breaches


def test_a_refused_request_holds_no_slot_and_other_breaches_give_theirs_back(team: Team, routing: None) -> None:
    scope = _key(team, max_concurrent=1, tpm=5)  # every request is over tpm, after taking its slot
    refused = _reserve(scope)
    assert [b.kind for b in refused.breaches] == [BreachKind.TPM] and refused.slot is not None
    _settle(refused)
    again = _reserve(scope)
    assert [b.kind for b in again.breaches] == [BreachKind.TPM]  # not CONCURRENCY: the slot came back


def test_monitor_mode_records_the_breach_and_lets_the_request_run_without_a_slot(team: Team, routing: None) -> None:
    scope = _key(team, max_concurrent=1, enforcement="monitor")
    held, over = _reserve(scope), _reserve(scope)
    assert held.slot is not None and not held.breaches
    assert over.slot is None and [b.kind for b in over.breaches] == [BreachKind.CONCURRENCY] and not over.unavailable
    _settle(over)  # holds no slot: gives back nothing, so the first request's stays taken
    assert [b.kind for b in _reserve(scope).breaches] == [BreachKind.CONCURRENCY]


def test_keys_without_the_limit_touch_no_slot(team: Team, routing: None, django_assert_num_queries: Any) -> None:
    scope = _key(team)
    with django_assert_num_queries(0):
        reservation = _reserve(scope)
    assert reservation.slot is None and "x-ratelimit-limit-concurrent" not in reservation.headers()


@pytest.fixture
def short_lease(settings: Any) -> None:
    settings.SYNAPSE = {**settings.SYNAPSE, "CONCURRENCY_LEASE_SECONDS": 1.0}


def test_a_slot_its_worker_never_gave_back_expires_with_its_lease(team: Team, routing: None, short_lease: None) -> None:
    scope = _key(team, max_concurrent=1)
    leaked = _reserve(scope)
    assert leaked.slot is not None
    # A worker killed mid-request: it never settles, and its refresher died with it.
    with concurrency._held_lock:
        concurrency._held.pop(leaked.slot)
    assert [b.kind for b in _reserve(scope).breaches] == [BreachKind.CONCURRENCY]
    admitted = wait_until(lambda: next((r for r in [_reserve(scope)] if not r.breaches), None), timeout=10)
    assert admitted is not None and admitted.slot is not None and admitted.slot != leaked.slot
    concurrency_release(leaked.slot)  # the leaked request's late release must not free the new holder's slot
    assert [b.kind for b in _reserve(scope).breaches] == [BreachKind.CONCURRENCY]


def test_a_running_requests_slot_is_kept_while_its_worker_refreshes_it(team: Team, routing: None, short_lease: None) -> None:
    scope = _key(team, max_concurrent=1)
    running = _reserve(scope)
    assert running.slot is not None

    def still_refused() -> bool:
        concurrency_leases_refresh()
        return [b.kind for b in _reserve(scope).breaches] == [BreachKind.CONCURRENCY]

    assert stays_true(still_refused, seconds=2.5, interval=0.2)
    _settle(running)
    assert not _reserve(scope).breaches


def test_a_key_cannot_be_issued_with_a_limit_outside_the_range(team: Team, routing: None) -> None:
    with pytest.raises(ValidationError, match="between 1 and 1000"):
        _key(team, max_concurrent=0)
    with pytest.raises(ValidationError, match="between 1 and 1000"):
        _key(team, max_concurrent=1001)
