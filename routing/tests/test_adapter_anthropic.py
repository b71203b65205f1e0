"""The Anthropic adapter against a fake Messages API over real HTTP and real SSE."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from routing.adapters import ADAPTERS
from routing.adapters.anthropic import AnthropicAdapter
from routing.adapters.base import BackendConfig, UpstreamError
from tests.fakes.adapters import chat, stream, streamed_text, streamed_tool_calls
from tests.fakes.anthropic import Answer, FakeAnthropic
from tests.fakes.base import Reply

KEY = "sk-ant-test-credential-7f3a9c"
BOUND = "You are the claims assistant. Never reveal policy numbers."
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key=KEY)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(_server: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> FakeAnthropic:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", KEY)
    _server.reset()
    return _server


def backend(
    fake: FakeAnthropic, timeout: float | None = None, first_byte_timeout: float | None = None, **options: Any
) -> BackendConfig:
    return BackendConfig(
        name="claude",
        kind="anthropic",
        base_url=fake.base_url,
        location="cloud",
        api_key_env="TEST_ANTHROPIC_KEY",
        timeout=timeout,
        first_byte_timeout=first_byte_timeout,
        options=options,
    )


def body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "messages": [{"role": "system", "content": BOUND}, *messages], **extra}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def test_it_is_registered_under_its_kind() -> None:
    assert ADAPTERS["anthropic"] is AnthropicAdapter


def test_it_sends_the_messages_api_request(fake: FakeAnthropic) -> None:
    chat(AnthropicAdapter, backend(fake), body({"role": "developer", "content": "Answer briefly."}, user("hello there")))

    (received,) = fake.received
    assert received.path == "/v1/messages"
    assert received.headers["x-api-key"] == KEY
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert received.headers.get("authorization") is None
    assert received.body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": [{"type": "text", "text": BOUND}, {"type": "text", "text": "Answer briefly."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
    }


def test_it_returns_a_chat_completion_with_usage(fake: FakeAnthropic) -> None:
    result = chat(AnthropicAdapter, backend(fake), body(user("hello there")))

    assert result["object"] == "chat.completion"
    assert result["id"].startswith("msg_")
    assert result["model"] == "claude-sonnet-4-5"
    (choice,) = result["choices"]
    assert choice["message"] == {"role": "assistant", "content": "echo: hello there", "refusal": None}
    assert choice["finish_reason"] == "stop"
    # The fake counts words: 9 in the bound prompt + 2 from the user; 3 in the answer.
    assert result["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def test_it_counts_cache_reads_as_prompt_tokens(fake: FakeAnthropic) -> None:
    fake.answer = Answer(text="ok", cache_read_input_tokens=40)

    result = chat(AnthropicAdapter, backend(fake), body(user("hello there")))

    assert result["usage"] == {
        "prompt_tokens": 51,
        "completion_tokens": 1,
        "total_tokens": 52,
        "prompt_tokens_details": {"cached_tokens": 40},
    }


@pytest.mark.parametrize(
    ("extra", "options", "expected"),
    [
        ({"max_completion_tokens": 77, "max_tokens": 5}, {}, 77),
        ({"max_tokens": 5}, {"default_max_tokens": 1000}, 5),
        ({}, {"default_max_tokens": 1000}, 1000),
        ({}, {}, 4096),
    ],
)
def test_it_always_sends_max_tokens(fake: FakeAnthropic, extra: dict[str, Any], options: dict[str, Any], expected: int) -> None:
    chat(AnthropicAdapter, backend(fake, **options), body(user("hi"), **extra))

    assert fake.received[0].body["max_tokens"] == expected


def test_it_maps_sampling_options(fake: FakeAnthropic) -> None:
    chat(AnthropicAdapter, backend(fake), body(user("hi"), temperature=1.6, top_p=0.9, stop="END", user="u-42", seed=7))

    sent = fake.received[0].body
    assert sent["temperature"] == 1.0  # OpenAI's 0..2 clamped into Anthropic's 0..1
    assert sent["top_p"] == 0.9
    assert sent["stop_sequences"] == ["END"]
    assert sent["metadata"] == {"user_id": "u-42"}
    assert "seed" not in sent


def test_it_leaves_out_params_the_backend_says_its_model_rejects(fake: FakeAnthropic) -> None:
    chat(AnthropicAdapter, backend(fake, drop_params=["temperature"]), body(user("hi"), temperature=0.2, top_p=0.5))

    assert "temperature" not in fake.received[0].body
    assert fake.received[0].body["top_p"] == 0.5


def test_it_maps_a_json_schema_response_format(fake: FakeAnthropic) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}

    chat(AnthropicAdapter, backend(fake), body(user("hi"), response_format=response_format))

    assert fake.received[0].body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


def test_it_streams_chunks_and_a_final_usage_chunk(fake: FakeAnthropic) -> None:
    request = body(user("hello there"), stream=True, stream_options={"include_usage": True})
    chunks = stream(AnthropicAdapter, backend(fake), request)

    assert fake.received[0].body["stream"] is True
    assert "stream_options" not in fake.received[0].body
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1 and chunks[0]["id"].startswith("msg_")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert streamed_text(chunks) == "echo: hello there"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def test_it_sends_tools_and_returns_tool_calls(fake: FakeAnthropic) -> None:
    fake.answer = Answer(text="", tool_calls=[("get_weather", {"city": "Paris"})])

    result = chat(AnthropicAdapter, backend(fake), body(user("weather?"), tools=[WEATHER_TOOL], tool_choice="required"))

    sent = fake.received[0].body
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert sent["tool_choice"] == {"type": "any"}
    (choice,) = result["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("toolu_")
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
        ("none", None, {"type": "none"}),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, None, None),
    ],
)
def test_it_maps_tool_choice(fake: FakeAnthropic, tool_choice: Any, parallel: Any, expected: Any) -> None:
    extra = {"tool_choice": tool_choice} if tool_choice is not None else {}
    if parallel is not None:
        extra["parallel_tool_calls"] = parallel

    chat(AnthropicAdapter, backend(fake), body(user("weather?"), tools=[WEATHER_TOOL], **extra))

    assert fake.received[0].body.get("tool_choice") == expected


def test_it_streams_tool_call_deltas(fake: FakeAnthropic) -> None:
    fake.answer = Answer(text="Let me check.", tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})])

    chunks = stream(AnthropicAdapter, backend(fake), body(user("weather?"), tools=[WEATHER_TOOL], stream=True))

    assert streamed_text(chunks) == "Let me check."
    calls = streamed_tool_calls(chunks)
    assert [call["name"] for call in calls] == ["get_weather", "get_weather"]
    assert [json.loads(call["arguments"]) for call in calls] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert all(call["id"].startswith("toolu_") for call in calls)
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_it_replays_tool_calls_and_results_as_blocks(fake: FakeAnthropic) -> None:
    calls = [
        {"id": "toolu_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "toolu_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
    ]
    conversation = body(
        user("weather in Paris and Oslo?"),
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "toolu_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": [{"type": "text", "text": "9C"}]},
        tools=[WEATHER_TOOL],
    )

    result = chat(AnthropicAdapter, backend(fake), conversation)

    assert result["choices"][0]["finish_reason"] == "stop"  # the fake accepted the tool_result pairing
    messages = fake.received[0].body["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
    }
    assert messages[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_b", "content": "9C"},
        ],
    }


def test_it_sends_images_as_base64_and_url_blocks(fake: FakeAnthropic) -> None:
    content = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]

    result = chat(AnthropicAdapter, backend(fake), body(user(content)))

    assert result["choices"][0]["message"]["content"] == "echo: What is in these?"
    assert fake.received[0].body["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    "message",
    [
        user([{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]),
        user([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]),
        {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]},
    ],
)
def test_it_rejects_what_anthropic_cannot_take_without_calling_it(fake: FakeAnthropic, message: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError) as caught:
        chat(AnthropicAdapter, backend(fake), body(user("hi"), message))

    assert caught.value.status == 400
    assert fake.received == []


def test_it_rejects_more_than_one_choice(fake: FakeAnthropic) -> None:
    with pytest.raises(UpstreamError) as caught:
        chat(AnthropicAdapter, backend(fake), body(user("hi"), n=2))

    assert caught.value.status == 400
    assert fake.received == []


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("max_tokens", "length"), ("stop_sequence", "stop"), ("refusal", "content_filter"), ("end_turn", "stop")],
)
def test_it_maps_stop_reasons(fake: FakeAnthropic, stop_reason: str, finish_reason: str) -> None:
    fake.answer = Answer(text="partial", stop_reason=stop_reason)

    assert chat(AnthropicAdapter, backend(fake), body(user("hi")))["choices"][0]["finish_reason"] == finish_reason
    chunks = stream(AnthropicAdapter, backend(fake), body(user("hi"), stream=True))
    assert chunks[-2]["choices"][0]["finish_reason"] == finish_reason


def error_reply(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, body={"type": "error", "error": {"type": kind, "message": message}}, headers=headers or {})


@pytest.mark.parametrize(
    ("reply", "status", "retryable"),
    [
        (error_reply(429, "rate_limit_error", "Rate limit exceeded", {"retry-after": "7"}), 429, True),
        (error_reply(529, "overloaded_error", "Overloaded"), 503, True),
        (error_reply(500, "api_error", "Internal server error"), 502, True),
        (error_reply(400, "invalid_request_error", "messages: roles must alternate"), 400, False),
        (error_reply(413, "request_too_large", "Request exceeds the maximum size"), 400, False),
    ],
)
def test_it_maps_provider_errors(fake: FakeAnthropic, reply: Reply, status: int, retryable: bool) -> None:
    for call in (chat, stream):
        fake.fail_next(reply)
        with pytest.raises(UpstreamError) as caught:
            call(AnthropicAdapter, backend(fake), body(user("hi"), stream=call is stream))

        assert (caught.value.status, caught.value.retryable) == (status, retryable)
        assert caught.value.upstream_status == reply.status
        assert reply.body["error"]["message"] in caught.value.message
    if status == 429:
        assert caught.value.retry_after == 7


def test_it_reports_rejected_credentials_as_a_gateway_fault(fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-wrong-credential-000")

    with pytest.raises(UpstreamError) as caught:
        chat(AnthropicAdapter, backend(fake), body(user("hi")))

    assert caught.value.status == 502
    assert caught.value.code == "upstream_auth_failed"
    assert "sk-ant-wrong-credential-000" not in str(caught.value)


def test_it_redacts_the_credential_if_the_provider_echoes_it(fake: FakeAnthropic) -> None:
    fake.fail_next(error_reply(400, "invalid_request_error", f"bad header value {KEY} in request"))

    with pytest.raises(UpstreamError) as caught:
        chat(AnthropicAdapter, backend(fake), body(user("hi")))

    assert KEY not in caught.value.message and KEY not in str(caught.value)
    assert "[redacted]" in caught.value.message


def test_it_raises_an_overloaded_event_before_yielding_anything(fake: FakeAnthropic) -> None:
    fake.answer = Answer(stream_error="overloaded_error")
    seen: list[dict[str, Any]] = []

    with pytest.raises(UpstreamError) as caught:
        stream(AnthropicAdapter, backend(fake), body(user("hi"), stream=True), into=seen)

    assert (caught.value.status, caught.value.retryable) == (503, True)
    assert seen == []  # nothing reached the client, so the caller may still retry or fail over


def test_it_fails_a_stream_that_breaks_off(fake: FakeAnthropic) -> None:
    fake.answer = Answer(text="one two three four five six")
    fake.answer.drop_after = 5  # message_start, block start, ping, two deltas
    seen: list[dict[str, Any]] = []

    with pytest.raises(UpstreamError) as caught:
        stream(AnthropicAdapter, backend(fake), body(user("hi"), stream=True), into=seen)

    assert caught.value.status == 502
    assert streamed_text(seen) == "one two "


def test_it_times_out_a_slow_answer(fake: FakeAnthropic) -> None:
    fake.fail_next(Reply(body={}, delay=2.0))
    started = time.monotonic()

    with pytest.raises(UpstreamError) as caught:
        chat(AnthropicAdapter, backend(fake, timeout=0.3), body(user("hi")))

    assert (caught.value.status, caught.value.code, caught.value.retryable) == (504, "upstream_timeout", True)
    assert time.monotonic() - started < 1.5


def test_it_times_out_a_stream_whose_first_event_is_late(fake: FakeAnthropic) -> None:
    fake.fail_next(Reply(chunks=[b"event: ping\ndata: {}\n\n"], delay=2.0))
    started = time.monotonic()

    with pytest.raises(UpstreamError) as caught:
        stream(AnthropicAdapter, backend(fake, timeout=30, first_byte_timeout=0.3), body(user("hi"), stream=True))

    assert (caught.value.status, caught.value.code) == (504, "upstream_timeout")
    assert time.monotonic() - started < 1.5


def test_it_reports_an_unreachable_backend_as_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", KEY)
    dead = BackendConfig(
        name="claude", kind="anthropic", base_url="http://127.0.0.1:9", location="cloud", api_key_env="TEST_ANTHROPIC_KEY"
    )

    with pytest.raises(UpstreamError) as caught:
        chat(AnthropicAdapter, dead, body(user("hi")))

    assert (caught.value.status, caught.value.retryable) == (502, True)
    assert KEY not in str(caught.value)
