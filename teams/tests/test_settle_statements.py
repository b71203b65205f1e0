"""A settlement on the database: one autocommitted statement when that is all it takes (no BEGIN
and COMMIT round trips), one transaction when it takes several."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import caches
from django.db import connections

from synapse.cache import CounterCache
from teams.limits import COUNTERS, Reservation, limits_reserve, limits_settle
from teams.models import Team
from teams.selectors import api_key_authenticate
from teams.services import api_key_issue

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Each counter statement of a settlement, with whether a transaction was open around it."""
    store = caches[COUNTERS]
    if not isinstance(store, CounterCache) or not store.holds_in_one_statement:
        pytest.skip("one-statement settlements are PostgreSQL's")
    calls: list[tuple[str, bool]] = []
    for name in ("adjust", "delete_if"):
        original = getattr(CounterCache, name)

        def spy(self: CounterCache, *args: Any, _name: str = name, _original: Any = original) -> Any:
            calls.append((_name, not connections[self.alias].get_autocommit()))
            return _original(self, *args)

        monkeypatch.setattr(CounterCache, name, spy)
    return calls


def _reservation(team: Team, **limits: Any) -> Reservation:
    issued = api_key_issue(
        team=team, name=f"settle {uuid.uuid4().hex[:6]}", system_prompt="Be brief.", models=["mock-small"],
        classification="sensitive", **limits,
    )  # fmt: skip
    scope = api_key_authenticate(issued.plaintext)
    assert scope is not None
    body = {"model": "mock-small", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 50}
    return limits_reserve(
        scope=scope, endpoint="chat.completions", body=body, model="mock-small",
        input_price_per_mtok=Decimal(0), output_price_per_mtok=Decimal(0),
    )  # fmt: skip


def test_a_settlement_of_counters_only_is_one_statement_outside_a_transaction(
    team: Team, routing: None, seen: list[tuple[str, bool]]
) -> None:
    reservation = _reservation(team, tpm=100_000)
    held = caches[COUNTERS].get(reservation.token_holds[0].key)

    limits_settle(reservation, prompt_tokens=3, completion_tokens=2, cost=None, reached_upstream=True)

    assert seen == [("adjust", False)]
    assert caches[COUNTERS].get(reservation.token_holds[0].key) == held - reservation.token_holds[0].amount + 5


def test_a_settlement_that_also_gives_back_a_slot_is_one_transaction(
    team: Team, routing: None, seen: list[tuple[str, bool]]
) -> None:
    reservation = _reservation(team, tpm=100_000, max_concurrent=2)
    assert reservation.slot is not None

    limits_settle(reservation, prompt_tokens=3, completion_tokens=2, cost=None, reached_upstream=True)

    assert seen == [("adjust", True), ("delete_if", True)]
    assert reservation.settled and reservation.slot is None
