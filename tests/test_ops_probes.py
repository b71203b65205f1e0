"""/healthz, /readyz and /metrics on the real server: no key, no audit row, counts across workers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from audit.models import AuditEvent
from conftest import Gateway, database_url_for_tests, free_port, start_gateway, stop_gateway
from routing.models import Backend, BackendHealth
from teams.services import IssuedKey

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

ASK = [{"role": "user", "content": "Summarise claim 42"}]
METRICS_TOKEN = "scrape-me-0123456789"


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def requests_total(gateway: Gateway) -> float:
    # A fresh connection per scrape, so both workers answer some of them.
    text = httpx.get(f"{gateway.base_url}/metrics", timeout=10, headers={"connection": "close"}).text
    return sum(samples(text, "synapse_requests_total").values())


def test_healthz_answers_without_a_key_or_an_audit_row(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.base_url}/healthz", timeout=5)
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert AuditEvent.objects.count() == 0


def test_readyz_reports_every_check_ok(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.base_url}/readyz", timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert body["checks"] == {"database": "ok", "migrations": "ok", "audit": "ok", "counters": "ok"}
    assert AuditEvent.objects.count() == 0


def test_probes_refuse_other_methods(gateway: Gateway) -> None:
    assert httpx.post(f"{gateway.base_url}/readyz", timeout=5).status_code == 405


def test_the_request_counter_matches_the_audit_rows_across_both_workers(gateway: Gateway, sensitive_key: IssuedKey) -> None:
    before = requests_total(gateway)
    headers = {"authorization": f"Bearer {sensitive_key.plaintext}", "connection": "close"}
    for n in range(12):
        key_headers = headers if n % 3 else {"authorization": "Bearer syn_wrong_key", "connection": "close"}
        # A third of them streamed: a stream's opening row is not a request, so it is not counted.
        body = {"model": "mock-small", "messages": ASK, "stream": n % 3 == 1}
        httpx.post(f"{gateway.v1}/chat/completions", json=body, headers=key_headers, timeout=30)
    rows = AuditEvent.objects.filter(event_type="request")
    assert rows.count() == 12
    assert AuditEvent.objects.filter(event_type="stream_opened").count() == 4
    # Every scrape reads one worker; each must report the sum over both.
    for _ in range(6):
        assert requests_total(gateway) - before == 12
    text = httpx.get(f"{gateway.base_url}/metrics", timeout=10).text
    by_outcome = samples(text, "synapse_requests_total")
    ok = by_outcome.get((("decision", "allowed"), ("endpoint", "chat.completions"), ("status", "200")), 0)
    refused = by_outcome.get((("decision", "blocked_auth"), ("endpoint", "chat.completions"), ("status", "401")), 0)
    assert ok >= rows.filter(decision="allowed").count() == 8
    assert refused >= rows.filter(decision="blocked_auth").count() == 4
    # The histograms and token counters moved too; no key id or request id is a label.
    assert sum(v for k, v in samples(text, "synapse_request_duration_seconds_count").items()) >= 12
    assert samples(text, "synapse_tokens_total")
    assert "key_id" not in text and sensitive_key.plaintext not in text and "req_" not in text


def test_database_gauges_show_an_open_circuit(gateway: Gateway, sensitive_key: IssuedKey) -> None:
    backend = Backend.objects.get(name="local-vllm")
    BackendHealth.objects.create(backend=backend, consecutive_failures=5, open_until=timezone.now() + timedelta(minutes=5))
    text = httpx.get(f"{gateway.base_url}/metrics", timeout=10).text
    circuit = samples(text, "synapse_backend_circuit_open")
    assert circuit[(("backend", "local-vllm"),)] == 1.0 and circuit[(("backend", "mock"),)] == 0.0
    assert samples(text, "synapse_webhook_outbox_pending") == {(): 0.0}


@pytest.fixture(scope="module")
def guarded_gateway(django_db_setup, django_db_blocker) -> Iterator[Gateway]:
    with django_db_blocker.unblock():
        url = database_url_for_tests()
    server = start_gateway(database_url=url, extra_env={"SYNAPSE_METRICS_TOKEN": METRICS_TOKEN})
    yield server
    stop_gateway(server)


def test_metrics_behind_a_token_need_it(guarded_gateway: Gateway) -> None:
    url = f"{guarded_gateway.base_url}/metrics"
    assert httpx.get(url, timeout=5).status_code == 401
    assert httpx.get(url, timeout=5, headers={"authorization": "Bearer not-it"}).status_code == 401
    response = httpx.get(url, timeout=10, headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200 and "synapse_webhook_outbox_pending" in response.text
    assert response.headers["content-type"].startswith("text/plain")
    # The probes stay open: an orchestrator has no token.
    assert httpx.get(f"{guarded_gateway.base_url}/healthz", timeout=5).status_code == 200


def test_readyz_names_an_unreachable_database_while_healthz_stays_up(django_db_setup) -> None:
    nowhere = f"postgres://postgres@127.0.0.1:{free_port()}/synapse"
    server = start_gateway(database_url=nowhere, extra_env={"SYNAPSE_DB_POOL_TIMEOUT": "1"})
    try:
        assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
        response = httpx.get(f"{server.base_url}/readyz", timeout=10)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable" and "database" in body["failed"]
        assert body["checks"]["database"] != "ok"
    finally:
        stop_gateway(server)
