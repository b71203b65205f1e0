"""Bad input gets one clear OpenAI-shaped error with the right status, and is still audited."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from audit.models import AuditEvent
from teams.services import IssuedKey

pytestmark = pytest.mark.django_db


def call(method: str, path: str, key: str | None = None, body: Any = None, raw: bytes | None = None, **headers: str) -> Any:
    client = AsyncClient()
    if key is not None:
        headers.setdefault("authorization", f"Bearer {key}")
    data = raw if raw is not None else (json.dumps(body) if body is not None else "")
    return async_to_sync(getattr(client, method))(path, data=data, content_type="application/json", headers=headers)


def assert_openai_error(response: Any, status: int, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


def only_request_row() -> AuditEvent:
    [row] = AuditEvent.objects.filter(event_type="request")
    return row


CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "mock-small"}, "messages"),
        ({"model": "mock-small", "messages": []}, "messages"),
        ({"model": "mock-small", "messages": ["hi"]}, "messages[0]"),
        ({"model": "mock-small", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "mock-small", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "mock-small", "messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
        ({"model": "mock-small", "messages": [{"role": "tool", "content": "r"}]}, "messages[0].tool_call_id"),
        ({"model": "mock-small", "messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
        ({"model": "mock-small", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"model": "mock-small", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        ({"model": "mock-small", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        (
            {"model": "mock-small", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": True}},
            "stream_options",
        ),
    ],
)
def test_it_rejects_malformed_chat_bodies_naming_the_field(sensitive_key: IssuedKey, body: dict[str, Any], param: str) -> None:
    assert_openai_error(call("post", CHAT, sensitive_key.plaintext, body), 400, param=param)
    row = only_request_row()
    assert (row.decision, row.status, row.key_id) == ("invalid_request", 400, sensitive_key.api_key.pk)


def test_it_rejects_invalid_json(sensitive_key: IssuedKey) -> None:
    assert_openai_error(call("post", CHAT, sensitive_key.plaintext, raw=b"{not json"), 400, code="invalid_json")
    assert only_request_row().status == 400


def test_authentication_is_checked_before_the_body(routing: None) -> None:
    assert_openai_error(call("post", CHAT, "syn_nope_nope", raw=b"{not json"), 401, code="invalid_api_key")
    assert only_request_row().decision == "blocked_auth"


def test_a_missing_key_is_a_401(routing: None) -> None:
    assert_openai_error(call("post", CHAT, None, {"model": "mock-small", "messages": [{"role": "user", "content": "x"}]}), 401)


def test_it_accepts_the_key_in_x_api_key(sensitive_key: IssuedKey) -> None:
    body = {"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}
    response = call("post", CHAT, None, body, raw=None, **{"x-api-key": sensitive_key.plaintext})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == 'Mock answer from mock-small: you said "hi".'


def test_an_oversized_body_is_a_413(sensitive_key: IssuedKey, settings: Any) -> None:
    settings.SYNAPSE = {**settings.SYNAPSE, "MAX_BODY_BYTES": 1000}
    body = {"model": "mock-small", "messages": [{"role": "user", "content": "x" * 2000}]}
    assert_openai_error(call("post", CHAT, sensitive_key.plaintext, body), 413, code="request_too_large")
    assert only_request_row().status == 413


def test_an_unknown_v1_route_is_an_openai_shaped_404_and_audited(routing: None) -> None:
    assert_openai_error(call("get", "/v1/assistants"), 404, code="unknown_url")
    assert only_request_row().status == 404


def test_a_wrong_method_is_a_405(sensitive_key: IssuedKey) -> None:
    assert_openai_error(call("get", CHAT, sensitive_key.plaintext), 405, code="method_not_allowed")
    assert only_request_row().status == 405


def test_an_unknown_model_is_a_403(sensitive_key: IssuedKey) -> None:
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}
    assert_openai_error(call("post", CHAT, sensitive_key.plaintext, body), 403, param="model", code="model_not_allowed")


@pytest.mark.parametrize(
    "body",
    [{"model": "mock-small"}, {"model": "mock-small", "input": []}, {"model": "mock-small", "input": [1, "a"]}],
)
def test_it_rejects_malformed_embeddings_input(sensitive_key: IssuedKey, body: dict[str, Any]) -> None:
    assert_openai_error(call("post", "/v1/embeddings", sensitive_key.plaintext, body), 400, param="input")


def test_it_forwards_the_standard_chat_fields_it_knows(sensitive_key: IssuedKey, onprem_upstream: Any) -> None:
    body = {
        "model": "llama-3-8b",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "seed": 7,
        "logit_bias": {"50256": -100},
    }
    assert call("post", CHAT, sensitive_key.plaintext, body).status_code == 200
    sent = onprem_upstream.received[0].body
    assert {k: sent[k] for k in ("tools", "tool_choice", "response_format", "seed", "logit_bias")} == {
        k: body[k] for k in ("tools", "tool_choice", "response_format", "seed", "logit_bias")
    }
