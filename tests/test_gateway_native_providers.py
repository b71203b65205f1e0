"""Anthropic, Gemini and Azure OpenAI behind the gateway: the official OpenAI SDK → the real server → the fakes.

The gateway reads the providers' credentials from FAKE_ANTHROPIC_KEY / FAKE_GEMINI_KEY
(tests/settings.py); the fakes refuse any other key, so every success here also proves the
credential was sent the provider's way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from audit.models import AuditEvent
from conftest import BOUND_PROMPT, Gateway
from routing.services import routing_import
from teams.models import Classification, Team
from teams.services import IssuedKey, api_key_issue
from tests.fakes.anthropic import Answer as ClaudeAnswer
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.base import Reply
from tests.fakes.gemini import Answer as GeminiAnswer
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def _anthropic_server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def _gemini_server() -> Iterator[FakeGemini]:
    fake = FakeGemini()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def claude(_anthropic_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    _anthropic_server.reset()
    yield _anthropic_server
    _anthropic_server.reset()


@pytest.fixture
def gemini(_gemini_server: FakeGemini) -> Iterator[FakeGemini]:
    _gemini_server.reset()
    yield _gemini_server
    _gemini_server.reset()


@pytest.fixture
def cloud_providers_key(team: Team, approver: Any, claude: FakeAnthropic, gemini: FakeGemini) -> IssuedKey:
    routing_import(
        document={
            "backends": [
                {"name": "anthropic", "kind": "anthropic", "base_url": claude.base_url, "api_key_env": "FAKE_ANTHROPIC_KEY",
                 "location": "cloud"},
                {"name": "gemini", "kind": "gemini", "base_url": f"{gemini.base_url}/v1beta", "api_key_env": "FAKE_GEMINI_KEY",
                 "location": "cloud"},
            ],
            "models": [
                {"name": "claude-sonnet", "backend": "anthropic", "upstream_model": "claude-sonnet-4-5",
                 "input_price_per_mtok": "3", "output_price_per_mtok": "15"},
                {"name": "gemini-flash", "backend": "gemini", "upstream_model": "gemini-2.5-flash",
                 "input_price_per_mtok": "0.30", "output_price_per_mtok": "2.50"},
                {"name": "gemini-embedding", "backend": "gemini", "upstream_model": "gemini-embedding-001",
                 "input_price_per_mtok": "0.15"},
            ],
        }
    )  # fmt: skip
    return api_key_issue(
        team=team,
        name="Support drafts",
        system_prompt=BOUND_PROMPT,
        models=["claude-sonnet", "gemini-flash", "gemini-embedding"],
        classification=Classification.NON_SENSITIVE,
        approved_by=approver,
    )


def request_row() -> AuditEvent:
    return AuditEvent.objects.filter(event_type="request").latest("id")


def expected_cost(prompt: int, completion: int, input_price: str, output_price: str) -> Decimal:
    return (Decimal(prompt) * Decimal(input_price) + Decimal(completion) * Decimal(output_price)) / Decimal(1_000_000)


# ── Anthropic ──


def test_claude_answers_through_the_messages_api(gateway: Gateway, cloud_providers_key: IssuedKey, claude: FakeAnthropic) -> None:
    completion = gateway.openai(cloud_providers_key.plaintext).chat.completions.create(
        model="claude-sonnet",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
        temperature=0.2,
    )

    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.model == "claude-sonnet"
    (received,) = claude.received
    assert received.path == "/v1/messages"
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert received.body["system"] == [{"type": "text", "text": BOUND_PROMPT}, {"type": "text", "text": "Be brief."}]
    assert received.body["model"] == "claude-sonnet-4-5" and received.body["max_tokens"] > 0
    # The fakes count words as tokens: the bound prompt, "Be brief." and "hello there".
    prompt_tokens = len(BOUND_PROMPT.split()) + 4
    usage = completion.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (prompt_tokens, 3)
    row = request_row()
    assert (row.backend, row.prompt_tokens, row.completion_tokens) == ("anthropic", prompt_tokens, 3)
    assert row.cost == expected_cost(prompt_tokens, 3, "3", "15")


def test_claude_streams_text_and_usage(gateway: Gateway, cloud_providers_key: IssuedKey, claude: FakeAnthropic) -> None:
    stream = gateway.openai(cloud_providers_key.plaintext).chat.completions.create(
        model="claude-sonnet",
        messages=[{"role": "user", "content": "stream this please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: stream this please"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert claude.received[0].body["stream"] is True
    row = request_row()
    assert (row.stream, row.completion_tokens, row.cost) == (True, 4, expected_cost(row.prompt_tokens or 0, 4, "3", "15"))


def test_claude_calls_tools_in_a_stream_the_sdk_can_assemble(
    gateway: Gateway, cloud_providers_key: IssuedKey, claude: FakeAnthropic
) -> None:
    claude.answer = ClaudeAnswer(text="", tool_calls=[("get_weather", {"city": "Paris"})])
    client = gateway.openai(cloud_providers_key.plaintext)

    with client.chat.completions.stream(
        model="claude-sonnet", messages=[{"role": "user", "content": "weather in Paris?"}], tools=[WEATHER]
    ) as stream:
        final = stream.get_final_completion()

    (call,) = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"

    # The tool's result goes back as a tool_result block for that tool_use.
    claude.reset()
    answer = client.chat.completions.create(
        model="claude-sonnet",
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
            {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
        ],
        tools=[WEATHER],
    )
    assert answer.choices[0].finish_reason == "stop"
    blocks = claude.received[0].body["messages"][2]["content"]
    assert blocks == [{"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}]


def test_claude_sees_images(gateway: Gateway, cloud_providers_key: IssuedKey, claude: FakeAnthropic) -> None:
    gateway.openai(cloud_providers_key.plaintext).chat.completions.create(
        model="claude-sonnet",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            }
        ],
    )

    image = claude.received[0].body["messages"][0]["content"][1]
    assert image == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}


def test_an_overloaded_anthropic_is_a_503_the_sdk_can_retry(
    gateway: Gateway, cloud_providers_key: IssuedKey, claude: FakeAnthropic
) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    claude.fail_next(Reply(status=529, body=overloaded), times=2)

    with pytest.raises(openai.InternalServerError) as caught:
        gateway.openai(cloud_providers_key.plaintext).chat.completions.create(
            model="claude-sonnet", messages=[{"role": "user", "content": "hi"}]
        )

    assert caught.value.status_code == 503
    assert "sk-ant" not in caught.value.message
    assert [a["outcome"] for a in request_row().attempts] == ["upstream_overloaded", "upstream_overloaded"]


# ── Gemini ──


def test_gemini_answers_and_streams(gateway: Gateway, cloud_providers_key: IssuedKey, gemini: FakeGemini) -> None:
    client = gateway.openai(cloud_providers_key.plaintext)

    completion = client.chat.completions.create(model="gemini-flash", messages=[{"role": "user", "content": "hello there"}])
    chunks = list(
        client.chat.completions.create(
            model="gemini-flash",
            messages=[{"role": "user", "content": "hello there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert completion.choices[0].message.content == "echo: hello there"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello there"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == completion.usage.total_tokens
    plain, streamed = gemini.received
    assert plain.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert streamed.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent" and streamed.query == {"alt": ["sse"]}
    assert plain.body["systemInstruction"] == {"parts": [{"text": BOUND_PROMPT}]}
    row = request_row()
    prompt_tokens = len(BOUND_PROMPT.split()) + 2  # the fake counts words: the bound prompt and "hello there"
    assert row.backend == "gemini" and row.cost == expected_cost(prompt_tokens, 3, "0.30", "2.50")


def test_gemini_calls_tools(gateway: Gateway, cloud_providers_key: IssuedKey, gemini: FakeGemini) -> None:
    gemini.answer = GeminiAnswer(text="", function_calls=[("get_weather", {"city": "Oslo"})])

    completion = gateway.openai(cloud_providers_key.plaintext).chat.completions.create(
        model="gemini-flash", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER], tool_choice="required"
    )

    (call,) = completion.choices[0].message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Oslo"})
    assert gemini.received[0].body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_a_prompt_gemini_blocks_is_a_400_content_filter_error(
    gateway: Gateway, cloud_providers_key: IssuedKey, gemini: FakeGemini
) -> None:
    gemini.answer = GeminiAnswer(block_reason="SAFETY")

    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai(cloud_providers_key.plaintext).chat.completions.create(
            model="gemini-flash", messages=[{"role": "user", "content": "something unsafe"}]
        )

    assert caught.value.code == "content_filter"
    assert len(gemini.received) == 1  # a policy refusal is neither retried nor routed around


def test_gemini_embeds(gateway: Gateway, cloud_providers_key: IssuedKey, gemini: FakeGemini) -> None:
    result = gateway.openai(cloud_providers_key.plaintext).embeddings.create(model="gemini-embedding", input=["one", "two"])

    assert [item.index for item in result.data] == [0, 1]
    assert all(len(item.embedding) == 8 for item in result.data)  # the SDK decoded the base64 it asked for
    assert gemini.received[0].path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert request_row().prompt_tokens == 2


# ── Azure OpenAI ──


@pytest.fixture
def azure_key(team: Team, approver: Any, cloud_upstream: FakeOpenAI) -> IssuedKey:
    routing_import(
        document={
            "backends": [
                {"name": "azure", "kind": "azure_openai", "base_url": cloud_upstream.base_url, "api_key_env": "FAKE_OPENAI_KEY",
                 "location": "cloud", "options": {"api_version": "2024-10-21"}},
            ],
            "models": [
                {"name": "gpt-4o-azure", "backend": "azure", "upstream_model": "prod-gpt4o",
                 "input_price_per_mtok": "2.50", "output_price_per_mtok": "10"},
            ],
        }
    )  # fmt: skip
    return api_key_issue(
        team=team,
        name="Support drafts (Azure)",
        system_prompt=BOUND_PROMPT,
        models=["gpt-4o-azure"],
        classification=Classification.NON_SENSITIVE,
        approved_by=approver,
    )


def test_azure_answers_and_streams_through_its_deployment(
    gateway: Gateway, azure_key: IssuedKey, cloud_upstream: FakeOpenAI
) -> None:
    client = gateway.openai(azure_key.plaintext)

    completion = client.chat.completions.create(model="gpt-4o-azure", messages=[{"role": "user", "content": "hello there"}])
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-azure",
            messages=[{"role": "user", "content": "hello there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert completion.choices[0].message.content == "echo: hello there"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello there"
    plain, streamed = cloud_upstream.received
    for received in (plain, streamed):
        assert received.path == "/openai/deployments/prod-gpt4o/chat/completions"
        assert received.query == {"api-version": ["2024-10-21"]}
        assert received.headers["api-key"] == os.environ["FAKE_OPENAI_KEY"] and "authorization" not in received.headers
    row = request_row()
    prompt_tokens = len(BOUND_PROMPT.split()) + 2  # the fake counts words: the bound prompt and "hello there"
    assert (row.backend, row.prompt_tokens, row.completion_tokens) == ("azure", prompt_tokens, 3)
    assert row.cost == expected_cost(prompt_tokens, 3, "2.50", "10")
