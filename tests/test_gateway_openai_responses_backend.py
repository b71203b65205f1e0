"""An `openai_responses` backend behind the gateway: the official OpenAI SDK → the real server →
a fake Responses API, through both client doors (chat completions and Responses).

Whatever door the client uses, the pipeline governs canonical chat and the adapter speaks the
Responses API upstream; what the fake received proves the bound prompt came first (as a
developer input item), nothing was stored at the provider, and the gateway's credential was
sent. The fake refuses requests that do not match the SDK's request types.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from audit.models import AuditEvent
from conftest import BOUND_PROMPT, Gateway
from routing.services import routing_import
from teams.models import Classification, Team
from teams.services import IssuedKey, api_key_issue
from tests.fakes.openai_responses import Answer, FakeOpenAIResponses

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

CHAT_WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
RESPONSES_WEATHER = {"type": "function", **CHAT_WEATHER["function"]}
# The fake's credential: the gateway reads it from FAKE_OPENAI_KEY (tests/settings.py).
CREDENTIAL = "sk-fake-cloud-credential"


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeOpenAIResponses]:
    fake = FakeOpenAIResponses(api_key=CREDENTIAL)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def upstream(_server: FakeOpenAIResponses) -> Iterator[FakeOpenAIResponses]:
    _server.reset()
    yield _server
    _server.reset()


@pytest.fixture
def codex_key(team: Team, approver: Any, upstream: FakeOpenAIResponses) -> IssuedKey:
    routing_import(
        document={
            "backends": [
                {"name": "openai-responses", "kind": "openai_responses", "base_url": f"{upstream.base_url}/v1",
                 "api_key_env": "FAKE_OPENAI_KEY", "location": "cloud"},
            ],
            "models": [
                {"name": "codex", "backend": "openai-responses", "upstream_model": "gpt-5-codex",
                 "input_price_per_mtok": "1.25", "output_price_per_mtok": "10"},
            ],
        }
    )  # fmt: skip
    return api_key_issue(
        team=team,
        name="Coding agent",
        system_prompt=BOUND_PROMPT,
        models=["codex"],
        classification=Classification.NON_SENSITIVE,
        approved_by=approver,
    )


def request_row() -> AuditEvent:
    return AuditEvent.objects.filter(event_type="request").latest("id")


def sent(upstream: FakeOpenAIResponses) -> dict[str, Any]:
    (received,) = upstream.received
    assert received.path == "/v1/responses"
    assert received.headers["authorization"] == f"Bearer {CREDENTIAL}"
    assert received.body["store"] is False
    return received.body


def bound_prompt_first(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body["input"]
    assert items[0] == {"type": "message", "role": "developer", "content": BOUND_PROMPT}
    assert "instructions" not in body
    return items[1:]


# The fake counts words as tokens.
PROMPT_WORDS = len(BOUND_PROMPT.split())


# ── through /v1/chat/completions ──


def test_chat_completions_reach_the_responses_api(gateway: Gateway, codex_key: IssuedKey, upstream: FakeOpenAIResponses) -> None:
    completion = gateway.openai(codex_key.plaintext).chat.completions.create(
        model="codex",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
        max_tokens=200,
    )

    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.model == "codex"
    body = sent(upstream)
    assert body["model"] == "gpt-5-codex" and body["max_output_tokens"] == 200
    assert bound_prompt_first(body) == [
        {"type": "message", "role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user", "content": "hello there"},
    ]
    usage = completion.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_WORDS + 4, 3)
    row = request_row()
    assert (row.endpoint, row.backend, row.decision, row.stream) == ("chat.completions", "openai-responses", "allowed", False)
    assert (row.prompt_tokens, row.completion_tokens) == (PROMPT_WORDS + 4, 3)


def test_chat_completions_stream_from_the_responses_api(
    gateway: Gateway, codex_key: IssuedKey, upstream: FakeOpenAIResponses
) -> None:
    stream = gateway.openai(codex_key.plaintext).chat.completions.create(
        model="codex",
        messages=[{"role": "user", "content": "stream this please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: stream this please"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    body = sent(upstream)
    assert body["stream"] is True
    bound_prompt_first(body)
    row = request_row()
    assert (row.endpoint, row.backend, row.stream, row.completion_tokens) == ("chat.completions", "openai-responses", True, 4)


def test_chat_completions_call_tools_through_the_responses_api(
    gateway: Gateway, codex_key: IssuedKey, upstream: FakeOpenAIResponses
) -> None:
    upstream.answer = Answer(text="", tool_calls=[("get_weather", {"city": "Paris"})])
    client = gateway.openai(codex_key.plaintext)

    with client.chat.completions.stream(
        model="codex", messages=[{"role": "user", "content": "weather in Paris?"}], tools=[CHAT_WEATHER]
    ) as stream:
        final = stream.get_final_completion()

    (call,) = final.choices[0].message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    assert final.choices[0].finish_reason == "tool_calls"
    assert sent(upstream)["tools"][0]["name"] == "get_weather"

    upstream.reset()
    answer = client.chat.completions.create(
        model="codex",
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
            {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
        ],
        tools=[CHAT_WEATHER],
    )

    assert answer.choices[0].finish_reason == "stop"
    assert bound_prompt_first(sent(upstream))[1:] == [
        {"type": "function_call", "call_id": call.id, "name": "get_weather", "arguments": call.function.arguments},
        {"type": "function_call_output", "call_id": call.id, "output": "18C and sunny"},
    ]


def test_a_stop_sequence_is_refused_in_chats_shape(gateway: Gateway, codex_key: IssuedKey, upstream: FakeOpenAIResponses) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai(codex_key.plaintext).chat.completions.create(
            model="codex", messages=[{"role": "user", "content": "hi"}], stop=["END"]
        )

    assert "stop sequences" in caught.value.message
    assert upstream.received == []
    assert request_row().status == 400


# ── through /v1/responses ──


def test_responses_reach_the_responses_api_after_the_bound_prompt(
    gateway: Gateway, codex_key: IssuedKey, upstream: FakeOpenAIResponses
) -> None:
    response = gateway.openai(codex_key.plaintext).responses.create(
        model="codex",
        instructions="Answer in French.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Summarise claim 42"}]}],
        reasoning={"effort": "low"},
    )

    assert response.output_text == "echo: Summarise claim 42"
    assert response.status == "completed" and response.store is False
    body = sent(upstream)
    assert body["reasoning"] == {"effort": "low"}
    assert bound_prompt_first(body) == [
        {"type": "message", "role": "developer", "content": "Answer in French."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Summarise claim 42"}]},
    ]
    assert response.usage is not None and response.usage.output_tokens == 4
    row = request_row()
    assert (row.endpoint, row.backend, row.decision, row.completion_tokens) == ("responses", "openai-responses", "allowed", 4)


def test_responses_stream_from_the_responses_api(gateway: Gateway, codex_key: IssuedKey, upstream: FakeOpenAIResponses) -> None:
    events = list(gateway.openai(codex_key.plaintext).responses.create(model="codex", input="stream this please", stream=True))

    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: stream this please"
    assert events[-1].response.usage is not None and events[-1].response.usage.output_tokens == 4
    bound_prompt_first(sent(upstream))
    row = request_row()
    assert (row.endpoint, row.backend, row.stream, row.completion_tokens) == ("responses", "openai-responses", True, 4)


def test_responses_call_functions_through_the_responses_api(
    gateway: Gateway, codex_key: IssuedKey, upstream: FakeOpenAIResponses
) -> None:
    upstream.answer = Answer(text="", tool_calls=[("get_weather", {"city": "Oslo"})])
    client = gateway.openai(codex_key.plaintext)

    events = list(client.responses.create(model="codex", input="Weather in Oslo?", tools=[RESPONSES_WEATHER], stream=True))

    (call,) = [item for item in events[-1].response.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Oslo"})
    assert sent(upstream)["tools"] == [{**RESPONSES_WEATHER, "strict": False}]

    upstream.reset()
    second = client.responses.create(
        model="codex",
        tools=[RESPONSES_WEATHER],
        input=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "9 C, rain"},
        ],
    )

    assert second.output_text.startswith("echo: ")
    assert bound_prompt_first(sent(upstream))[1:] == [
        {"type": "function_call", "call_id": call.call_id, "name": "get_weather", "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "9 C, rain"},
    ]
    row = request_row()
    assert (row.endpoint, row.backend, row.decision) == ("responses", "openai-responses", "allowed")


def test_a_mid_stream_error_reaches_the_client_as_an_error_event(
    gateway: Gateway, codex_key: IssuedKey, upstream: FakeOpenAIResponses
) -> None:
    upstream.answer = Answer(stream_error="invalid_prompt")

    # Nothing was sent yet when the upstream failed, so the client gets the error in the
    # Responses API's shape with the status it maps (a bad prompt: 400), and nothing retried.
    with pytest.raises(openai.BadRequestError) as caught:
        list(gateway.openai(codex_key.plaintext).responses.create(model="codex", input="hi", stream=True))

    assert "invalid_prompt" in caught.value.message
    assert len(upstream.received) == 1

    row = request_row()
    assert (row.endpoint, row.backend, row.status) == ("responses", "openai-responses", 400)
