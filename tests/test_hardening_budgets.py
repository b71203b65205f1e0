"""Budgets and token limits that hold (issue 14), against the real server and a provider fake.

Before: key budget $5, output at $1,000/Mtok, 20 concurrent requests without max_tokens and an
upstream answering 3,000 tokens spent $12.04 (241 %): 1,024 tokens were held per request but the
upstream was never told to stop there. An upstream that ignored max_tokens was charged whatever
it returned, and served.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest

from audit.models import AuditEvent
from conftest import Gateway
from routing.models import Backend, Model
from teams.models import Team
from teams.services import IssuedKey, api_key_issue
from tests.fakes.openai import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

LONG = 3000  # words, which the fake counts as tokens


class Verbose(FakeOpenAI):
    """Answers 3,000 tokens; stops at the request's output cap only while `honours_cap`."""

    honours_cap = True

    def answer_for(self, body: dict[str, Any]) -> str:
        cap = body.get("max_completion_tokens") or body.get("max_tokens") or LONG
        return " ".join(["w"] * (min(cap, LONG) if self.honours_cap else LONG))


@pytest.fixture(scope="module")
def _verbose_server() -> Iterator[Verbose]:
    server = Verbose()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def verbose(_verbose_server: Verbose, routing: None) -> Verbose:
    _verbose_server.reset()
    _verbose_server.honours_cap = True
    backend = Backend.objects.create(
        name="verbose", kind="openai", base_url=f"{_verbose_server.base_url}/v1", api_key_env="FAKE_OPENAI_KEY", location="cloud"
    )
    Model.objects.create(
        name="verbose-pricy",
        backend=backend,
        upstream_model="gpt-4o-2024-08-06",
        input_price_per_mtok=Decimal("1000"),
        output_price_per_mtok=Decimal("1000"),
    )
    return _verbose_server


def issue(team: Team, **limits: Any) -> IssuedKey:
    return api_key_issue(
        team=team, name=f"k {uuid.uuid4().hex[:6]}", system_prompt="Be brief.", models=["verbose-pricy"],
        classification="non_sensitive", **limits,
    )  # fmt: skip


def chat(gateway: Gateway, key: str, **body: Any) -> httpx.Response:
    payload = {"model": "verbose-pricy", "messages": [{"role": "user", "content": "tell me everything"}], **body}
    return httpx.post(f"{gateway.v1}/chat/completions", json=payload, headers={"authorization": f"Bearer {key}"}, timeout=60)


def test_twenty_concurrent_requests_never_overrun_the_budget(gateway: Gateway, team: Team, verbose: Verbose) -> None:
    budget = Decimal("5")
    issued = issue(team, budget=budget)
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: chat(gateway, issued.plaintext), range(20)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 402}, statuses
    # The upstream was told to stop at what each request held (SYNAPSE_DEFAULT_COMPLETION_RESERVE).
    assert {r.body.get("max_tokens") for r in verbose.received} == {1024}
    rows = AuditEvent.objects.filter(event_type="request", key_id=issued.api_key.pk)
    spent = sum((row.cost or Decimal(0) for row in rows), Decimal(0))
    one_reservation = Decimal(1024 + 20) * Decimal(1000) / Decimal(1_000_000)
    assert Decimal(0) < spent <= budget + one_reservation, spent
    assert rows.filter(decision="allowed").count() == statuses.count(200)


def test_an_upstream_that_ignores_the_cap_is_refused_and_charged_what_it_reports(
    gateway: Gateway, team: Team, verbose: Verbose
) -> None:
    verbose.honours_cap = False
    issued = issue(team, budget=Decimal("100"))
    response = chat(gateway, issued.plaintext, max_tokens=100)
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_over_reservation"
    row = AuditEvent.objects.get(event_type="request", key_id=issued.api_key.pk)
    assert (row.decision, row.error_code, row.completion_tokens) == ("upstream_error", "upstream_over_reservation", LONG)


def test_a_stream_past_its_reservation_is_cut_with_an_error_event_and_audited(
    gateway: Gateway, team: Team, verbose: Verbose
) -> None:
    verbose.honours_cap = False
    issued = issue(team, tpm=1_000_000)
    response = chat(gateway, issued.plaintext, max_tokens=100, stream=True)
    assert response.status_code == 200
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    delivered = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices"))
    assert events[-1]["error"]["code"] == "upstream_over_reservation" and "[DONE]" not in response.text
    assert len(delivered.split()) <= 100 + 100 // 4 + 16  # the cap, and the counting slack
    row = AuditEvent.objects.get(event_type="request", key_id=issued.api_key.pk)
    assert (row.decision, row.error_code, row.stream) == ("upstream_error", "upstream_over_reservation", True)


def test_both_output_caps_are_clamped_to_the_keys_ceiling(gateway: Gateway, team: Team, verbose: Verbose) -> None:
    issued = issue(team, max_tokens=50)
    assert chat(gateway, issued.plaintext, max_tokens=4000, max_completion_tokens=4000).status_code == 200
    sent = verbose.received[0].body
    assert (sent["max_tokens"], sent["max_completion_tokens"]) == (50, 50)
