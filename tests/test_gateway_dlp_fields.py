"""DLP reads every field, both ways, through the real server and a fake vLLM that records
what it received; fields the gateway does not know are refused, not forwarded."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import httpx
import pytest

from audit.models import AuditEvent
from conftest import Gateway
from dlp.services import pack_apply
from routing.models import Backend
from teams.services import IssuedKey
from tests.fakes.openai import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

AWS_KEY = "AKIAZ7Q4MB2KXN5PLR3W"
CARD = "4111 1111 1111 1111"
REDACTED = "[REDACTED:CREDIT_CARD]"


@pytest.fixture(autouse=True)
def baseline(db: None) -> None:
    pack_apply(name_or_path="baseline")


def user(text: str = "hi") -> dict[str, Any]:
    return {"role": "user", "content": text}


# The eleven places a value reached the upstream unread (issue 13), as a body built around it.
PLACES: dict[str, Any] = {
    "message name": lambda v: {"messages": [{"role": "user", "content": "hi", "name": v}]},
    "tool description": lambda v: {
        "messages": [user()],
        "tools": [{"type": "function", "function": {"name": "pay", "description": f"card {v}", "parameters": {}}}],
    },
    "legacy functions": lambda v: {
        "messages": [user()],
        "functions": [{"name": "pay", "description": f"card {v}", "parameters": {"type": "object"}}],
    },
    "refusal part": lambda v: {
        "messages": [user(), {"role": "assistant", "content": [{"type": "refusal", "refusal": f"not {v}"}]}, user()]
    },
    "assistant refusal": lambda v: {"messages": [user(), {"role": "assistant", "content": None, "refusal": f"not {v}"}, user()]},
    "prediction": lambda v: {"messages": [user()], "prediction": {"type": "content", "content": f"card {v}"}},
    "response_format schema": lambda v: {
        "messages": [user()],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "c", "schema": {"type": "object", "properties": {"card": {"const": v}}}},
        },
    },
    "stop": lambda v: {"messages": [user()], "stop": ["END", v]},
    "user": lambda v: {"messages": [user()], "user": v},
    "metadata": lambda v: {"messages": [user()], "metadata": {"note": f"card {v}"}},
    "tool-call name": lambda v: {
        "messages": [
            user(),
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": v, "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ]
    },
}


def post(gateway: Gateway, key: IssuedKey, body: dict[str, Any], path: str = "/chat/completions") -> httpx.Response:
    return httpx.post(
        gateway.v1 + path,
        json={"model": "llama-3-8b", **body},
        headers={"authorization": f"Bearer {key.plaintext}"},
        timeout=30,
    )


def row() -> AuditEvent:
    return AuditEvent.objects.filter(event_type="request").latest("seq")


@pytest.mark.parametrize("place", sorted(PLACES))
def test_a_card_in_any_field_is_redacted_before_it_is_forwarded(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI, place: str
) -> None:
    response = post(gateway, sensitive_key, PLACES[place](CARD))
    assert response.status_code == 200, response.text
    [received] = onprem_upstream.received
    sent = json.dumps(received.body)
    assert CARD not in sent and REDACTED in sent
    assert ("prompt", "CREDIT_CARD", "redact") in [(f["direction"], f["category"], f["action"]) for f in row().dlp]


@pytest.mark.parametrize("place", sorted(PLACES))
def test_a_credential_in_any_field_is_blocked(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI, place: str
) -> None:
    response = post(gateway, sensitive_key, PLACES[place](AWS_KEY))
    assert response.status_code == 400 and response.json()["error"]["code"] == "dlp_blocked"
    assert AWS_KEY not in response.text
    assert onprem_upstream.received == []


@pytest.mark.parametrize(
    "field", ["chat_template", "chat_template_kwargs", "continue_final_message", "add_generation_prompt", "top_k", "bogus"]
)
def test_an_unknown_field_is_refused_naming_it(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI, field: str
) -> None:
    response = post(gateway, sensitive_key, {"messages": [user()], field: {"enable_thinking": CARD}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("unknown_parameter", field)
    assert CARD not in response.text
    assert onprem_upstream.received == []
    assert (row().decision, row().status) == ("invalid_request", 400)


def test_an_unknown_message_field_is_refused(gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI) -> None:
    response = post(gateway, sensitive_key, {"messages": [{"role": "user", "content": "hi", "cache_hint": "x"}]})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].cache_hint"
    assert onprem_upstream.received == []


def test_an_extra_field_the_backend_allows_is_forwarded_and_scanned(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    backend = Backend.objects.get(name="local-vllm")
    backend.options = {"extra_fields": ["top_k", "guided_regex"]}
    backend.save()
    response = post(gateway, sensitive_key, {"messages": [user()], "top_k": 20, "guided_regex": f"{CARD}|x"})
    assert response.status_code == 200, response.text
    [received] = onprem_upstream.received
    assert received.body["top_k"] == 20 and received.body["guided_regex"] == f"{REDACTED}|x"


def test_a_template_field_is_refused_even_if_an_operator_listed_it(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    # The routing import refuses it; a row edited by hand still does not let it through.
    Backend.objects.filter(name="local-vllm").update(options={"extra_fields": ["chat_template"]})
    response = post(gateway, sensitive_key, {"messages": [user()], "chat_template": "{{ messages }}"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "chat_template"
    assert onprem_upstream.received == []


def test_embeddings_user_is_scanned_and_unknown_fields_refused(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    response = post(gateway, sensitive_key, {"input": "hello", "user": CARD}, "/embeddings")
    assert response.status_code == 200, response.text
    assert onprem_upstream.received[0].body["user"] == REDACTED
    response = post(gateway, sensitive_key, {"input": "hello", "truncate_prompt_tokens": 5}, "/embeddings")
    assert response.status_code == 400 and response.json()["error"]["param"] == "truncate_prompt_tokens"
    assert len(onprem_upstream.received) == 1


def test_a_clean_request_with_every_field_arrives_unchanged(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    body: dict[str, Any] = {
        "messages": [
            {"role": "developer", "content": "Answer briefly."},
            {"role": "user", "content": [{"type": "text", "text": "Summarise the Q3 claims report."}], "name": "ana"},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "Find a claim", "parameters": {}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "stop": ["END"],
        "user": "ana-42",
        "metadata": {"team": "claims"},
        "temperature": 0.2,
        "seed": 7,
        "logit_bias": {"50256": -100},
    }
    assert post(gateway, sensitive_key, body).status_code == 200
    sent = onprem_upstream.received[0].body
    assert {k: sent[k] for k in body if k != "messages"} == {k: v for k, v in body.items() if k != "messages"}
    assert sent["messages"][-1] == body["messages"][-1]


# ── a generated request with a secret in each of its strings in turn ──


def _template(seed: int) -> dict[str, Any]:
    """A valid chat body whose every string is a placeholder "@" (filled one at a time)."""
    rng = random.Random(seed)
    schema = {"type": "object", "properties": {"@": {"type": "string", "description": "@", "enum": ["@", "@"]}}}
    tool = {"type": "function", "function": {"name": "@", "description": "@", "parameters": schema}}
    body: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "@", "name": "@"},
            {"role": "user", "content": [{"type": "text", "text": "@"}, {"type": "text", "text": "@"}], "name": "@"},
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "@"}, {"type": "refusal", "refusal": "@"}],
                "refusal": "@",
                "tool_calls": [{"id": "@", "type": "function", "function": {"name": "@", "arguments": "@"}}],
            },
            {"role": "tool", "tool_call_id": "@", "content": "@"},
            {"role": "user", "content": "@"},
        ],
        "tools": [tool] * rng.randint(1, 2),
        "functions": [{"name": "@", "description": "@", "parameters": schema}],
        "tool_choice": {"type": "function", "function": {"name": "@"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "@", "schema": schema}},
        "prediction": {"type": "content", "content": [{"type": "text", "text": "@"}]},
        "stop": ["@", "@"],
        "user": "@",
        "metadata": {"@": "@"},
    }
    return {k: body[k] for k in ["messages", *rng.sample(sorted(set(body) - {"messages"}), rng.randint(4, len(body) - 1))]}


def _fill(value: Any, slot: int, counter: list[int]) -> Any:
    if value == "@":
        counter[0] += 1
        return f"ref {CARD} end" if counter[0] - 1 == slot else f"word{counter[0]}"
    if isinstance(value, list):
        return [_fill(v, slot, counter) for v in value]
    if isinstance(value, dict):
        return {_fill(k, slot, counter): _fill(v, slot, counter) for k, v in value.items()}
    return value


@pytest.mark.parametrize("seed", [1, 2])
def test_a_secret_in_any_string_of_a_generated_request_never_reaches_the_upstream(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI, seed: int
) -> None:
    template = _template(seed)
    slots = json.dumps(template).count('"@"')
    with httpx.Client(timeout=30) as client:
        for slot in range(slots):
            onprem_upstream.reset()
            body = _fill(template, slot, [0])
            response = client.post(
                gateway.v1 + "/chat/completions",
                json={"model": "llama-3-8b", **body},
                headers={"authorization": f"Bearer {sensitive_key.plaintext}"},
            )
            assert response.status_code == 200, (slot, response.text)
            [received] = onprem_upstream.received
            assert CARD not in json.dumps(received.body), f"slot {slot}"


# ── answers: every text channel and the logprobs tokens ──


def sse(response: httpx.Response) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The chunks of a streamed answer, and the error event if the gateway stopped it."""
    chunks: list[dict[str, Any]] = []
    for line in response.iter_lines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if "error" in event:
            return chunks, event["error"]
        chunks.append(event)
    return chunks, None


def channel(chunks: list[dict[str, Any]], name: str) -> str:
    return "".join(c["delta"].get(name) or "" for chunk in chunks for c in chunk["choices"])


def tokens(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for chunk in chunks for c in chunk["choices"] for e in ((c.get("logprobs") or {}).get("content") or [])]


def stream(gateway: Gateway, key: IssuedKey, **body: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    payload = {"model": "llama-3-8b", "messages": [user("go")], "stream": True, **body}
    with httpx.stream(
        "POST", gateway.v1 + "/chat/completions", json=payload, headers={"authorization": f"Bearer {key.plaintext}"}
    ) as response:
        assert response.status_code == 200
        return sse(response)


@pytest.mark.parametrize("name", ["reasoning_content", "refusal"])
def test_reasoning_and_refusal_are_redacted_in_answers_and_streams(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI, name: str
) -> None:
    setattr(onprem_upstream, "reasoning" if name == "reasoning_content" else "refusal", f"the card {CARD} is on file")
    message = post(gateway, sensitive_key, {"messages": [user()]}).json()["choices"][0]["message"]
    assert message[name] == f"the card {REDACTED} is on file"
    chunks, error = stream(gateway, sensitive_key)
    assert error is None and channel(chunks, name) == f"the card {REDACTED} is on file"


@pytest.mark.parametrize("name", ["reasoning", "refusal"])
def test_a_credential_in_reasoning_or_refusal_blocks_the_answer(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI, name: str
) -> None:
    setattr(onprem_upstream, name, f"use {AWS_KEY} now")
    response = post(gateway, sensitive_key, {"messages": [user()]})
    assert response.status_code == 422 and AWS_KEY not in response.text
    chunks, error = stream(gateway, sensitive_key)
    assert error is not None and AWS_KEY[:4] not in json.dumps(chunks)


def test_logprobs_tokens_are_redacted_like_the_content(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    onprem_upstream.pieces = ["Card ", CARD[:7], CARD[7:14], CARD[14:], " ok"]
    onprem_upstream.reply = "Card " + CARD + " ok"
    choice = post(gateway, sensitive_key, {"messages": [user()], "logprobs": True, "top_logprobs": 1}).json()["choices"][0]
    assert choice["message"]["content"] == f"Card {REDACTED} ok"
    entries = choice["logprobs"]["content"]
    assert "".join(e["token"] for e in entries) == f"Card {REDACTED} ok"
    assert all(bytes(e["bytes"]).decode() == e["token"] for e in entries)
    assert CARD[:7] not in json.dumps(choice["logprobs"])

    chunks, error = stream(gateway, sensitive_key, logprobs=True, top_logprobs=1)
    assert error is None and channel(chunks, "content") == f"Card {REDACTED} ok"
    assert "".join(e["token"] for e in tokens(chunks)) == f"Card {REDACTED} ok"
    assert CARD[:7] not in json.dumps(chunks)


def test_a_blocked_stream_lets_no_part_of_the_secret_out_through_logprobs(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    onprem_upstream.pieces = ["Use ", AWS_KEY[:4], AWS_KEY[4:8], AWS_KEY[8:12], AWS_KEY[12:16], AWS_KEY[16:], " now."]
    chunks, error = stream(gateway, sensitive_key, logprobs=True)
    assert error is not None
    assert "".join(e["token"] for e in tokens(chunks)) == channel(chunks, "content")
    assert AWS_KEY[:4] not in json.dumps(chunks)


# ── what the model would decode, both directions ──


def test_escapes_in_tool_call_arguments_and_a_value_split_over_messages_are_caught(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    escaped = '{"card": "' + "".join(f"\\u{ord(c):04x}" for c in CARD) + '"}'
    call = {"id": "c1", "type": "function", "function": {"name": "pay", "arguments": escaped}}
    messages = [
        user("my card is 4111 1111"),
        user(" 1111 1111, thanks"),
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    assert post(gateway, sensitive_key, {"messages": messages}).status_code == 200
    sent = onprem_upstream.received[0].body["messages"]
    assert sent[-2]["tool_calls"][0]["function"]["arguments"] == f'{{"card": "{REDACTED}"}}'
    assert [m.get("content") for m in sent[-4:-2]] == [f"my card is {REDACTED}", ", thanks"]


def test_an_encoded_value_in_an_answer_is_redacted_whole_and_streamed(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    encoded = "".join(f"%{b:02X}" for b in CARD.encode())
    onprem_upstream.reply = f"pay?card={encoded} now"
    message = post(gateway, sensitive_key, {"messages": [user()]}).json()["choices"][0]["message"]
    assert message["content"] == f"pay?card={REDACTED} now"
    onprem_upstream.pieces = [onprem_upstream.reply[i : i + 7] for i in range(0, len(onprem_upstream.reply), 7)]
    chunks, error = stream(gateway, sensitive_key)
    assert error is None and channel(chunks, "content") == f"pay?card={REDACTED} now"


def test_streamed_base64_in_seven_character_chunks_is_caught_like_the_whole_answer(
    gateway: Gateway, sensitive_key: IssuedKey, onprem_upstream: FakeOpenAI
) -> None:
    blob = base64.b64encode(base64.b64encode(f"the key is {AWS_KEY}".encode())).decode()
    onprem_upstream.reply = f"Here you go: {blob} bye"
    assert post(gateway, sensitive_key, {"messages": [user()]}).status_code == 422
    onprem_upstream.pieces = [onprem_upstream.reply[i : i + 7] for i in range(0, len(onprem_upstream.reply), 7)]
    chunks, error = stream(gateway, sensitive_key)
    assert error is not None and error["code"] == "dlp_response_blocked"
    assert blob[:8] not in channel(chunks, "content")
