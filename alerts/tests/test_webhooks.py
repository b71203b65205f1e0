"""Webhooks: the outbox commits with the alert; delivery is signed, retried with backoff, once.

The receiver is a real HTTP server on a thread (`receiver.Receiver`), not a mock: it sees the
bytes, headers and retries a customer's endpoint would see, and checks the signature from
the documented header format alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import httpx
import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from alerts.models import Alert, AlertKind, DeliveryStatus, WebhookDelivery
from alerts.services import alert_fire, webhook_endpoint_create, webhook_endpoint_update
from alerts.webhooks import webhook_deliveries_drain, webhook_verify
from conftest import ROOT, Gateway, database_url_for_tests
from tests.waiting import wait_until

from .conftest import tune
from .receiver import Receiver, signature_valid


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(fail_first=2).start()
    yield server
    server.stop()


@pytest.fixture
def fast_retries(settings):
    settings.SYNAPSE = {**settings.SYNAPSE, "WEBHOOK_BACKOFF_SECONDS": 10.0, "WEBHOOK_MAX_ATTEMPTS": 4}


def fire(kind: str = AlertKind.DLP_BLOCKS) -> Alert:
    alert = alert_fire(kind=kind, title="5 DLP blocks for key 'triage' within 10 min", subject="key:7", key_id=7, team_id=3)
    assert alert is not None
    return alert


@pytest.mark.sqlite
@pytest.mark.django_db
@pytest.mark.usefixtures("fast_retries")
def test_a_receiver_that_fails_twice_gets_the_alert_exactly_once_with_a_valid_signature(receiver: Receiver) -> None:
    endpoint = webhook_endpoint_create(name="SOC", url=receiver.url)
    alert = fire()
    [delivery] = WebhookDelivery.objects.filter(alert=alert)
    start = timezone.now()

    assert webhook_deliveries_drain(now=start).retrying == 1  # 500
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == start + timedelta(seconds=10) and delivery.last_status == 500
    assert webhook_deliveries_drain(now=start + timedelta(seconds=9)).sent == 0  # not due yet
    assert webhook_deliveries_drain(now=start + timedelta(seconds=10)).retrying == 1  # 500 again
    delivery.refresh_from_db()
    # Exponential: 10 s after the first failure, 20 s after the second.
    assert delivery.next_attempt_at == start + timedelta(seconds=30) and delivery.attempts == 2
    assert webhook_deliveries_drain(now=start + timedelta(seconds=29)).sent == 0
    assert webhook_deliveries_drain(now=start + timedelta(seconds=30)).delivered == 1
    assert webhook_deliveries_drain(now=start + timedelta(hours=2)).sent == 0  # nothing left to send

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 3 and delivery.last_status == 200
    assert [r.answered for r in receiver.received] == [500, 500, 200]
    # Every try is the same delivery (a receiver that stores ids can drop a redelivery) ...
    assert {r.headers["synapse-delivery"] for r in receiver.received} == {str(delivery.pk)}
    # ... and the one it accepted is the alert, signed with the endpoint's secret.
    [accepted] = receiver.accepted()
    assert signature_valid(secret=endpoint.secret, header=accepted.headers["synapse-signature"], body=accepted.body)
    payload = json.loads(accepted.body)
    assert payload["id"] == str(delivery.pk) and payload["type"] == "alert.fired"
    assert payload["alert"]["id"] == alert.pk and payload["alert"]["kind"] == "dlp_blocks" and payload["alert"]["key_id"] == 7
    assert accepted.headers["content-type"] == "application/json" and accepted.headers["synapse-event"] == "alert.fired"


@pytest.mark.django_db
def test_a_signature_fails_for_another_body_secret_or_an_old_timestamp(receiver: Receiver) -> None:
    endpoint = webhook_endpoint_create(name="SOC", url=receiver.url)
    receiver.fail_first = 0
    fire()
    assert webhook_deliveries_drain().delivered == 1
    [got] = receiver.accepted()
    header, body = got.headers["synapse-signature"], got.body
    assert webhook_verify(secret=endpoint.secret, header=header, body=body)
    assert not signature_valid(secret=endpoint.secret, header=header, body=body.replace(b"dlp_blocks", b"usage_spike"))
    assert not signature_valid(secret="whsec_someone-else", header=header, body=body)
    timestamp = int(header.split(",")[0].removeprefix("t="))
    assert not webhook_verify(secret=endpoint.secret, header=header, body=body, now=timestamp + 301)  # a replay


@pytest.mark.django_db
def test_the_outbox_row_is_written_in_the_alerts_transaction(receiver: Receiver) -> None:
    everything = webhook_endpoint_create(name="everything", url=receiver.url)
    auth_only = webhook_endpoint_create(name="auth only", url=receiver.url, kinds=["auth_failures"])
    paused = webhook_endpoint_create(name="paused", url=receiver.url)
    webhook_endpoint_update(endpoint=paused, name="paused", url=receiver.url, kinds=[], is_active=False)

    class CrashError(Exception):
        pass

    with pytest.raises(CrashError), transaction.atomic():
        fire()
        raise CrashError  # the alert's transaction does not commit: neither row may remain
    assert not Alert.objects.exists() and not WebhookDelivery.objects.exists()

    alert = fire()
    # One row per subscribed, active endpoint, created with the alert.
    assert list(WebhookDelivery.objects.filter(alert=alert).values_list("endpoint_id", flat=True)) == [everything.pk]
    assert not WebhookDelivery.objects.filter(endpoint__in=[auth_only, paused]).exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("fast_retries")
def test_it_gives_up_after_the_configured_number_of_attempts(receiver: Receiver) -> None:
    webhook_endpoint_create(name="SOC", url=receiver.url)
    receiver.fail_first = 100
    fire()
    start = timezone.now()
    outcomes = [webhook_deliveries_drain(now=start + timedelta(hours=hour)) for hour in range(6)]
    assert [(o.retrying, o.failed) for o in outcomes] == [(1, 0), (1, 0), (1, 0), (0, 1), (0, 0), (0, 0)]
    [delivery] = WebhookDelivery.objects.all()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 4 and "HTTP 500" in delivery.last_error
    assert len(receiver.received) == 4


@pytest.mark.sqlite
@pytest.mark.django_db
def test_a_delivery_leased_by_another_drainer_is_not_sent_twice(receiver: Receiver) -> None:
    webhook_endpoint_create(name="SOC", url=receiver.url)
    receiver.fail_first = 0
    fire()
    now = timezone.now()
    # Another process claimed it a moment ago and is sending it now.
    WebhookDelivery.objects.update(locked_until=now + timedelta(seconds=60))
    assert webhook_deliveries_drain(now=now).sent == 0 and receiver.received == []
    # That process died mid-send: once its lease runs out, the delivery is sent again.
    assert webhook_deliveries_drain(now=now + timedelta(seconds=61)).delivered == 1


@pytest.mark.django_db
def test_a_drain_with_nothing_due_makes_no_http_client(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []
    real = httpx.Client

    def counting(*args: object, **kwargs: object) -> httpx.Client:
        made.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "Client", counting)
    webhook_endpoint_create(name="SOC", url=receiver.url)
    receiver.fail_first = 0
    assert webhook_deliveries_drain().sent == 0 and made == []  # every worker polls: no CA bundle loaded for nothing
    fire()
    assert webhook_deliveries_drain().delivered == 1 and len(made) == 1


# ── across processes: the command, and the server's background drain ──


def _python(code: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "synapse.settings"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.django_db
def test_the_command_drains_the_outbox(receiver: Receiver) -> None:
    receiver.fail_first = 0
    webhook_endpoint_create(name="SOC", url=receiver.url)
    fire()
    fire(AlertKind.AUTH_FAILURES)
    out = StringIO()
    call_command("deliver_webhooks", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"delivered": 2, "retrying": 0, "failed": 0}
    assert len(receiver.accepted()) == 2
    out = StringIO()
    call_command("deliver_webhooks", stdout=out)
    assert out.getvalue().strip() == "Delivered 0, retrying 0, gave up on 0."


@pytest.mark.sqlite
@pytest.mark.django_db(transaction=True)
def test_it_delivers_the_alert_of_a_process_that_died_before_sending_it(receiver: Receiver) -> None:
    receiver.fail_first = 0
    endpoint = webhook_endpoint_create(name="SOC", url=receiver.url)
    url = database_url_for_tests()
    # A gateway worker raises an alert and is killed before any drain of its own could send it.
    crashed = _python(
        "import os, signal, django; django.setup()\n"
        "from alerts.services import alert_fire\n"
        "alert = alert_fire(kind='auth_failures', title='10 failed authentications', subject='203.0.113.7')\n"
        "print(alert.pk, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n",
        url,
    )
    assert crashed.returncode == -9, crashed.stderr
    alert_id = int(crashed.stdout.strip())
    [delivery] = WebhookDelivery.objects.filter(alert_id=alert_id)  # committed with the alert
    # A fresh process drains the outbox. (When the suite's shared gateway runs on this database,
    # its workers drain it too, and may get there first: either way it arrives exactly once.)
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "synapse.settings"}
    command = [sys.executable, "manage.py", "deliver_webhooks", "--json"]
    for _ in range(2):
        drained = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert drained.returncode == 0, drained.stderr
        assert json.loads(drained.stdout)["retrying"] == 0
    [got] = receiver.wait_for(1)
    assert json.loads(got.body)["alert"]["id"] == alert_id and got.headers["synapse-delivery"] == str(delivery.pk)
    assert signature_valid(secret=endpoint.secret, header=got.headers["synapse-signature"], body=got.body)
    # Whichever process sent it saves the outcome after the receiver answered: wait for that.
    saved = wait_until(lambda: WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.DELIVERED).first())
    assert saved is not None and saved.attempts == 1
    assert len(receiver.received) == 1


@pytest.mark.gateway
@pytest.mark.django_db(transaction=True)
def test_it_raises_the_alert_and_delivers_it_in_the_servers_background(gateway: Gateway, receiver: Receiver) -> None:
    receiver.fail_first = 0
    tune(AlertKind.AUTH_FAILURES, threshold=3, window_minutes=5, cooldown_minutes=30)
    endpoint = webhook_endpoint_create(name="SOC", url=receiver.url, kinds=["auth_failures"])
    # Six failures: even if a 5-minute counting window ends among them, one window holds three.
    for attempt in range(6):
        response = httpx.post(
            f"{gateway.v1}/chat/completions",
            json={"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer syn_nosuchkey_{uuid.uuid4().hex}{attempt}"},
            timeout=30,
        )
        assert response.status_code == 401
    # Nothing here drains: the gateway's workers do, in the background (SYNAPSE_WEBHOOK_POLL_SECONDS).
    accepted = receiver.wait_for(1, deadline_seconds=20)
    assert len(accepted) == 1, "the gateway did not deliver the alert"
    [got] = accepted
    assert signature_valid(secret=endpoint.secret, header=got.headers["synapse-signature"], body=got.body)
    alert = json.loads(got.body)["alert"]
    assert alert["kind"] == "auth_failures" and alert["subject"] == "127.0.0.1"
    assert Alert.objects.count() == 1
    # The worker saves the delivery after the receiver answered, so it may not have yet.
    delivered = wait_until(lambda: WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 1)
    assert delivered and WebhookDelivery.objects.count() == 1


@pytest.mark.django_db
def test_a_deactivated_endpoint_gets_nothing_until_it_is_active_again(receiver: Receiver) -> None:
    endpoint = webhook_endpoint_create(name="SOC", url=receiver.url)
    receiver.fail_first = 0
    fire()
    webhook_endpoint_update(endpoint=endpoint, name="SOC", url=receiver.url, kinds=[], is_active=False)
    assert webhook_deliveries_drain().sent == 0 and receiver.received == []
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PENDING
    webhook_endpoint_update(endpoint=endpoint, name="SOC", url=receiver.url, kinds=[], is_active=True)
    assert webhook_deliveries_drain().delivered == 1 and len(receiver.accepted()) == 1
