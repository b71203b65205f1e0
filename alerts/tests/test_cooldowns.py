"""A cooldown this process claimed or found is remembered until it ends: an off-hours stretch
reads its team's cooldown from the counter store once, not on every request."""

from __future__ import annotations

import time

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alerts import services
from alerts.models import AlertKind, AnomalyRule


@pytest.mark.django_db
def test_a_claimed_cooldown_is_known_here_without_reading_the_store() -> None:
    rule = AnomalyRule.default(AlertKind.OFF_HOURS)
    assert services._claim(AlertKind.OFF_HOURS, "team:1", rule) is True
    with CaptureQueriesContext(connection) as queries:
        assert services._cooling(AlertKind.OFF_HOURS, "team:1") is True
    assert len(queries) == 0
    assert services._claim(AlertKind.OFF_HOURS, "team:1", rule) is False  # the store still decides claims


@pytest.mark.django_db
def test_a_cooldown_another_worker_claimed_is_read_once_and_held_until_it_ends() -> None:
    claimed_at = time.time()
    ends = int(claimed_at) + 2
    caches[services.COUNTERS].add(f"alert:{AlertKind.OFF_HOURS}:team:2", ends, 2)  # as _claim stores it
    with CaptureQueriesContext(connection) as queries:
        assert services._cooling(AlertKind.OFF_HOURS, "team:2") is True
        assert services._cooling(AlertKind.OFF_HOURS, "team:2") is True
    assert len(queries) == 1
    assert services._cooling(AlertKind.OFF_HOURS, "team:3") is False
    time.sleep(claimed_at + 2.1 - time.time())
    assert services._cooling(AlertKind.OFF_HOURS, "team:2") is False  # ended: the store's row has expired too


def test_the_memo_stays_bounded() -> None:
    cooldowns = services._Cooldowns(limit=3)
    for n in range(5):
        cooldowns.hold(f"s{n}", until=time.time() + 60)
    assert len(cooldowns._ends) <= 3 and cooldowns.holds("s4")
