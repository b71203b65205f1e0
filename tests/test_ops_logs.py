"""One JSON log line per request, with default log settings, for every way a request can end."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Gateway, database_url_for_tests, free_port, start_gateway, stop_gateway
from dlp.services import pack_apply
from routing.services import routing_import
from teams.models import Classification, Team
from teams.services import IssuedKey, api_key_issue
from tests.fakes.base import Reply
from tests.fakes.openai import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

AWS_KEY = "AKIAZ7Q4MB2KXN5PLR3W"
PROMPT = "Summarise claim 42 for the adjuster"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def json_gateway(django_db_setup, django_db_blocker) -> Iterator[Gateway]:
    with django_db_blocker.unblock():
        url = database_url_for_tests()
    # The container's log settings: JSON, the default level (INFO).
    server = start_gateway(database_url=url, extra_env={"SYNAPSE_LOG_FORMAT": "json", "SYNAPSE_LOG_LEVEL": "INFO"})
    yield server
    stop_gateway(server)


def log_lines(gateway: Gateway) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gateway.log.read_text().splitlines() if line.strip()]


def line_for(gateway: Gateway, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        found = [line for line in log_lines(gateway) if line.get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"{len(found)} lines for {request_id}"
            return found[0]
        time.sleep(0.1)


def chat(gateway: Gateway, key: str, model: str, text: str = PROMPT, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.v1}/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": text}]},
        headers={"authorization": f"Bearer {key}", **headers},
        timeout=30,
    )


def key_for(team: Team, models: list[str], **limits: Any) -> IssuedKey:
    return api_key_issue(
        team=team,
        name=f"ops {uuid.uuid4().hex[:6]}",
        system_prompt="You are helpful.",
        models=models,
        classification=Classification.SENSITIVE,
        **limits,
    )


def test_every_outcome_leaves_one_json_line_without_text_or_secrets(
    json_gateway: Gateway, team: Team, routing: None, onprem_upstream: FakeOpenAI
) -> None:
    pack_apply(name_or_path="baseline")
    dead_port = free_port()
    routing_import(
        document={
            "backends": [
                {
                    "name": "dead-vllm",
                    "kind": "vllm",
                    "base_url": f"http://127.0.0.1:{dead_port}/v1",
                    "location": "on_prem",
                    "max_retries": 0,
                }
            ],
            "models": [{"name": "dead-model", "backend": "dead-vllm", "upstream_model": "x"}],
        }
    )
    key = key_for(team, ["mock-small", "llama-3-8b", "dead-model"])
    limited = key_for(team, ["mock-small"], rpm=1)

    outcomes: dict[str, httpx.Response] = {}
    outcomes["ok"] = chat(json_gateway, key.plaintext, "mock-small", traceparent=f"00-{TRACE_ID}-00f067aa0ba902b7-01")
    outcomes["unauthenticated"] = chat(json_gateway, "syn_nope_wrong", "mock-small")
    outcomes["dlp"] = chat(json_gateway, key.plaintext, "llama-3-8b", text=f"deploy with {AWS_KEY}")
    limited_answers = [chat(json_gateway, limited.plaintext, "mock-small") for _ in range(3)]
    outcomes["limited"] = next(r for r in limited_answers if r.status_code == 429)
    onprem_upstream.fail_next(Reply(status=500, body={"error": {"message": "GPU fell over", "type": "server_error"}}), times=5)
    outcomes["upstream_500"] = chat(json_gateway, key.plaintext, "llama-3-8b")
    outcomes["unreachable"] = chat(json_gateway, key.plaintext, "dead-model")

    expected = {
        "ok": (200, "allowed"),
        "unauthenticated": (401, "blocked_auth"),
        "dlp": (400, "blocked_dlp"),
        "limited": (429, "blocked_limit"),
        "upstream_500": (502, "upstream_error"),
    }
    lines = {name: line_for(json_gateway, response.headers["x-request-id"]) for name, response in outcomes.items()}
    for name, (status, decision) in expected.items():
        assert (lines[name]["status"], lines[name]["decision"]) == (status, decision), name
    assert lines["unreachable"]["status"] >= 502 and lines["unreachable"]["decision"].startswith("upstream_")

    ok = lines["ok"]
    assert ok["logger"] == "synapse.request" and ok["level"] == "INFO"
    assert ok["endpoint"] == "chat.completions" and ok["method"] == "POST" and ok["path"] == "/v1/chat/completions"
    assert ok["team"] == "claims" and ok["model"] == "mock-small" and ok["backend"] == "mock"
    assert ok["key_id"] == key.api_key.pk and ok["key_prefix"] == key.api_key.prefix
    assert ok["duration_ms"] > 0 and ok["upstream_ms"] is not None and ok["prompt_tokens"] > 0
    assert ok["client_ip"] == "127.0.0.1" and ok["error_code"] is None
    # The client's trace continues: its trace id in the line and in the response's traceparent.
    assert ok["trace_id"] == TRACE_ID
    assert outcomes["ok"].headers["traceparent"].split("-")[1] == TRACE_ID
    assert outcomes["ok"].headers["traceparent"].split("-")[2] != "00f067aa0ba902b7"

    assert lines["unauthenticated"]["error_code"] == "invalid_api_key" and lines["unauthenticated"]["key_id"] is None
    assert lines["dlp"]["error_code"] == "dlp_blocked"
    assert lines["limited"]["error_code"] and lines["limited"]["key_prefix"] == limited.api_key.prefix
    assert lines["upstream_500"]["backend"] == "local-vllm" and lines["upstream_500"]["attempts"] >= 1
    assert lines["unreachable"]["backend"] == "dead-vllm" and lines["unreachable"]["error_code"]

    text = json_gateway.log.read_text()
    for secret in (key.plaintext, limited.plaintext, AWS_KEY, PROMPT, "GPU fell over"):
        assert secret not in text


def test_a_request_without_traceparent_starts_a_trace(json_gateway: Gateway) -> None:
    response = chat(json_gateway, "syn_nope_wrong", "mock-small", traceparent="not-a-traceparent")
    version, trace_id, span_id, flags = response.headers["traceparent"].split("-")
    assert (version, len(trace_id), len(span_id), flags) == ("00", 32, 16, "01")
    assert line_for(json_gateway, response.headers["x-request-id"])["trace_id"] == trace_id


def test_gunicorns_own_lines_are_json_too(json_gateway: Gateway) -> None:
    lines = log_lines(json_gateway)  # every line parses (log_lines would raise otherwise)
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in lines)
    # The control socket is this instance's own, not the one under $HOME every master would share.
    (control,) = [line["message"] for line in lines if line["message"].startswith("Control socket listening at")]
    assert "/synapse-gunicorn-" in control and "/.gunicorn/" not in control
    # The access log is off by default: the gateway's own line per request says more.
    assert not any(line["logger"] in ("uvicorn.access", "gunicorn.access") for line in lines)
