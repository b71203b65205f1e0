"""A prompt DLP cannot scan within its bounds is refused with a 400 and audited, in every mode."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from audit.models import AuditEvent
from teams.models import Team
from teams.services import IssuedKey, api_key_issue

pytestmark = pytest.mark.django_db


def chat(key: str, content: str, path: str = "/v1/chat/completions", **extra: Any) -> Any:
    body = {"model": "mock-small", "messages": [{"role": "user", "content": content}], **extra}
    if path.endswith("embeddings"):
        body = {"model": "mock-small", "input": content}
    return async_to_sync(AsyncClient().post)(
        path, data=json.dumps(body), content_type="application/json", headers={"authorization": f"Bearer {key}"}
    )


def _row() -> AuditEvent:
    [row] = AuditEvent.objects.filter(event_type="request")
    return row


def test_a_prompt_over_the_scan_cap_is_a_400_and_audited(sensitive_key: IssuedKey, settings: Any) -> None:
    settings.SYNAPSE = {**settings.SYNAPSE, "DLP_MAX_SCAN_BYTES": 10_000}
    response = chat(sensitive_key.plaintext, "x" * 20_000)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "prompt_too_large_to_scan" and error["param"] == "messages" and "10000" in error["message"]
    row = _row()
    assert (row.decision, row.status, row.error_code) == ("blocked_dlp", 400, "prompt_too_large_to_scan")
    assert chat(sensitive_key.plaintext, "x" * 5_000).status_code == 200  # under the cap: served


def test_a_scan_past_its_time_budget_is_a_400_and_audited(sensitive_key: IssuedKey, settings: Any) -> None:
    settings.SYNAPSE = {**settings.SYNAPSE, "DLP_TIME_BUDGET_MS": 1}
    rng = random.Random(14)
    hostile = "".join(rng.choice("0123456789-., :|/") for _ in range(300_000))
    response = chat(sensitive_key.plaintext, hostile)
    assert response.status_code == 400 and response.json()["error"]["code"] == "prompt_scan_budget_exceeded"
    assert (_row().decision, _row().error_code) == ("blocked_dlp", "prompt_scan_budget_exceeded")


def test_embeddings_inputs_are_bounded_too(sensitive_key: IssuedKey, settings: Any) -> None:
    settings.SYNAPSE = {**settings.SYNAPSE, "DLP_MAX_SCAN_BYTES": 1_000}
    response = chat(sensitive_key.plaintext, "y" * 2_000, path="/v1/embeddings")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "prompt_too_large_to_scan" and response.json()["error"]["param"] == "input"


def test_monitor_mode_does_not_let_an_unscanned_prompt_through(team: Team, routing: None, settings: Any) -> None:
    issued = api_key_issue(
        team=team, name="watch", system_prompt="p", models=["mock-small"], classification="sensitive", enforcement="monitor"
    )
    settings.SYNAPSE = {**settings.SYNAPSE, "DLP_MAX_SCAN_BYTES": 1_000}
    response = chat(issued.plaintext, "z" * 2_000)
    assert response.status_code == 400 and _row().decision == "blocked_dlp"


def test_a_large_prompt_is_scanned_on_the_scan_pool_and_still_governed(team: Team, routing: None, settings: Any) -> None:
    settings.SYNAPSE = {**settings.SYNAPSE, "DLP_LARGE_PROMPT_BYTES": 1_000}
    issued = api_key_issue(team=team, name="large", system_prompt="p", models=["mock-small"], classification="sensitive", rpm=100)
    padding = "plain words " * 200  # 2,400 bytes: over the threshold
    blocked = chat(issued.plaintext, padding + "deploy with AKIAIOSFODNN7EXAMPLE please")  # a credential blocks
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "dlp_blocked"
    served = chat(issued.plaintext, padding)
    assert served.status_code == 200 and served["x-ratelimit-limit-requests"] == "100"  # the limits were held too
    rows = AuditEvent.objects.filter(event_type="request").order_by("id")
    assert [(r.decision, r.status) for r in rows] == [("blocked_dlp", 400), ("allowed", 200)]
