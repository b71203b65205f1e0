"""The circuit breaker's shared state: counted by every worker, read with the route, shown in the console."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from routing.dispatch import FAILURE, RECOVERED
from routing.models import Backend, BackendHealth
from routing.selectors import route_for_key
from routing.services import backend_health_settle
from teams.services import IssuedKey

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def policy(settings: Any) -> None:
    settings.SYNAPSE = {**settings.SYNAPSE, "CIRCUIT_FAILURES": 3, "CIRCUIT_COOLDOWN": 30.0}


def fail(backend: str = "local-vllm", times: int = 1) -> None:
    for _ in range(times):
        backend_health_settle(events=[(backend, FAILURE, "upstream_overloaded")])


def health(backend: str = "local-vllm") -> BackendHealth:
    return BackendHealth.objects.get(backend__name=backend)


def test_it_opens_after_the_threshold_of_consecutive_failures(routing: None) -> None:
    fail(times=2)
    assert health().open_until is None

    fail()

    opened = health()
    assert opened.consecutive_failures == 3 and opened.last_error == "upstream_overloaded"
    assert opened.open_until is not None
    assert timedelta(seconds=28) < opened.open_until - timezone.now() <= timedelta(seconds=30)


def test_a_success_closes_it_and_forgets_the_failures(routing: None) -> None:
    fail(times=3)

    backend_health_settle(events=[("local-vllm", RECOVERED, "ok")])

    assert (health().consecutive_failures, health().open_until) == (0, None)


def test_a_failed_trial_after_the_cool_down_reopens_it_at_once(routing: None) -> None:
    fail(times=3)
    BackendHealth.objects.update(open_until=timezone.now() - timedelta(seconds=1))

    fail()

    open_until = health().open_until
    assert open_until is not None and open_until > timezone.now()


def test_the_route_carries_the_state_to_the_dispatcher(sensitive_key: IssuedKey) -> None:
    fail(times=3)

    route = route_for_key(key_id=sensitive_key.api_key.pk, model="llama-3-8b")

    assert route is not None
    assert route.backend_failures == 3
    assert route.circuit_open_until == health().open_until


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_never_lose_a_failure(routing: None) -> None:
    def one_failure(_: int) -> None:
        try:
            fail()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(one_failure, range(12)))

    assert health().consecutive_failures == 12


def test_the_console_shows_an_open_circuit_and_closes_it(approver: Any, routing: None) -> None:
    fail(times=3)
    console = Client()
    console.force_login(approver)
    changelist = reverse("admin:routing_backend_changelist")

    page = console.get(changelist).content.decode()
    assert "OPEN for" in page and "3 failures" in page

    backend = Backend.objects.get(name="local-vllm")
    response = console.post(changelist, {"action": "close_circuit", "_selected_action": [backend.pk]})

    assert response.status_code == 302
    assert (health().consecutive_failures, health().open_until) == (0, None)
    event = AuditEvent.objects.filter(event_type="routing_changed").latest("id")
    assert (event.actor, event.detail) == ("alice", {"circuit_reset": ["local-vllm"]})
    assert "OPEN for" not in console.get(changelist).content.decode()
