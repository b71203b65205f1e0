"""The OpenAI Responses adapter against a fake Responses API over real HTTP and real SSE."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from routing.adapters import ADAPTERS
from routing.adapters.base import BackendConfig, UpstreamError
from routing.adapters.openai_responses import AzureOpenAIResponsesAdapter, OpenAIResponsesAdapter
from tests.fakes.adapters import chat, stream, streamed_text, streamed_tool_calls
from tests.fakes.base import Received, Reply
from tests.fakes.openai_responses import Answer, FakeOpenAIResponses, error_reply

KEY = "sk-test-responses-credential-5d1e"
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
def _server() -> Iterator[FakeOpenAIResponses]:
    fake = FakeOpenAIResponses(api_key=KEY)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(_server: FakeOpenAIResponses, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAIResponses:
    monkeypatch.setenv("TEST_RESPONSES_KEY", KEY)
    _server.reset()
    return _server


def backend(fake: FakeOpenAIResponses, kind: str = "openai_responses", **options: Any) -> BackendConfig:
    base_url = fake.base_url if kind == "azure_openai_responses" else f"{fake.base_url}/v1"
    return BackendConfig(
        name="gpt", kind=kind, base_url=base_url, location="cloud", api_key_env="TEST_RESPONSES_KEY", options=options
    )


def body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-5-codex", "messages": [{"role": "system", "content": BOUND}, *messages], **extra}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


# ── the fake speaks the SDK's wire format ──


def test_the_fakes_answers_are_sdk_responses(fake: FakeOpenAIResponses) -> None:
    fake.answer = Answer(text="Let me check.", tool_calls=[("get_weather", {"city": "Paris"})], reasoning_tokens=5)
    request = {"model": "gpt-5", "input": [{"type": "message", "role": "user", "content": "hi"}], "store": False}

    reply = fake.respond(Received("POST", "/v1/responses", {}, {"authorization": f"Bearer {KEY}"}, request))

    response = Response.model_validate(reply.body)
    assert [item.type for item in response.output] == ["reasoning", "message", "function_call"]
    assert response.usage is not None and response.usage.output_tokens_details.reasoning_tokens == 5


@pytest.mark.parametrize(
    "answer",
    [
        Answer(text="one two", tool_calls=[("get_weather", {"city": "Oslo"})]),
        Answer(refusal="I can't help with that."),
        Answer(text="cut", incomplete="max_output_tokens"),
        Answer(stream_error="server_error"),
        Answer(failed="rate_limit_exceeded"),
    ],
)
def test_the_fakes_stream_events_are_sdk_events(fake: FakeOpenAIResponses, answer: Answer) -> None:
    fake.answer = answer
    request = {"model": "gpt-5", "input": "hi there", "store": False, "stream": True}

    reply = fake.respond(Received("POST", "/v1/responses", {}, {"authorization": f"Bearer {KEY}"}, request))

    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    frames = [chunk.decode() for chunk in reply.chunks or []]
    events = [adapter.validate_python(json.loads(frame.split("data: ", 1)[1])) for frame in frames]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert all(frame.startswith(f"event: {event.type}\n") for frame, event in zip(frames, events, strict=True))


def test_the_fake_refuses_unknown_fields_and_orphan_tool_outputs(fake: FakeOpenAIResponses) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    unknown = fake.respond(Received("POST", "/v1/responses", {}, headers, {"model": "m", "input": "x", "messages": []}))
    orphan = {"model": "m", "input": [{"type": "function_call_output", "call_id": "call_x", "output": "18C"}]}

    assert (unknown.status, unknown.body["error"]["param"]) == (400, "messages")
    assert fake.respond(Received("POST", "/v1/responses", {}, headers, orphan)).status == 400


# ── request ──


def test_it_is_registered_under_its_kinds() -> None:
    assert ADAPTERS["openai_responses"] is OpenAIResponsesAdapter
    assert ADAPTERS["azure_openai_responses"] is AzureOpenAIResponsesAdapter


def test_it_sends_a_stateless_responses_request_with_the_bound_prompt_first(fake: FakeOpenAIResponses) -> None:
    conversation = body(
        {"role": "developer", "content": "Answer briefly."},
        user("hello there"),
        {"role": "system", "content": [{"type": "text", "text": "Late note."}]},
        max_tokens=300,
        temperature=0.3,
        top_p=0.9,
        user="u-42",
        reasoning_effort="low",
    )

    chat(OpenAIResponsesAdapter, backend(fake), conversation)

    (received,) = fake.received
    assert received.path == "/v1/responses"
    assert received.headers["authorization"] == f"Bearer {KEY}"
    assert received.body == {
        "model": "gpt-5-codex",
        "input": [
            {"type": "message", "role": "developer", "content": BOUND},
            {"type": "message", "role": "developer", "content": "Answer briefly."},
            {"type": "message", "role": "user", "content": "hello there"},
            {"type": "message", "role": "developer", "content": "Late note."},
        ],
        "store": False,
        "max_output_tokens": 300,
        "temperature": 0.3,
        "top_p": 0.9,
        "safety_identifier": "u-42",
        "reasoning": {"effort": "low"},
    }


def test_it_returns_a_chat_completion_with_usage(fake: FakeOpenAIResponses) -> None:
    fake.answer = Answer(cached_tokens=4, reasoning_tokens=7)

    result = chat(OpenAIResponsesAdapter, backend(fake), body(user("hello there")))

    assert result["object"] == "chat.completion"
    assert result["id"].startswith("resp_")
    assert result["model"] == "gpt-5-codex"
    (choice,) = result["choices"]
    # The reasoning item the fake sends first is dropped.
    assert choice["message"] == {"role": "assistant", "content": "echo: hello there", "refusal": None}
    assert choice["finish_reason"] == "stop"
    # The fake counts words: 9 in the bound prompt + 2 from the user; 3 in the answer + 7 reasoning.
    assert result["usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 10,
        "total_tokens": 21,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 7},
    }


def test_it_sends_images_and_files_as_input_parts(fake: FakeOpenAIResponses) -> None:
    content = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
    ]

    result = chat(OpenAIResponsesAdapter, backend(fake), body(user(content)))

    assert result["choices"][0]["message"]["content"] == "echo: What is in these?"
    assert fake.received[0].body["input"][1]["content"] == [
        {"type": "input_text", "text": "What is in these?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "low"},
        {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "auto"},
        {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
    ]


def test_it_maps_tools_tool_choice_and_formats(fake: FakeOpenAIResponses) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    request = body(
        user("weather?"),
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema, "strict": True}},
    )

    chat(OpenAIResponsesAdapter, backend(fake), request)

    sent = fake.received[0].body
    assert sent["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": WEATHER_TOOL["function"]["parameters"],
            "strict": False,  # chat's default, spelled out: Responses tools are strict unless told
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert sent["parallel_tool_calls"] is False
    assert sent["text"] == {"format": {"type": "json_schema", "name": "r", "schema": schema, "strict": True}}


def test_it_returns_tool_calls_and_replays_them_with_their_results(fake: FakeOpenAIResponses) -> None:
    fake.answer = Answer(text="", tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})])

    result = chat(OpenAIResponsesAdapter, backend(fake), body(user("weather?"), tools=[WEATHER_TOOL], tool_choice="required"))

    assert fake.received[0].body["tool_choice"] == "required"
    (choice,) = result["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [json.loads(call["function"]["arguments"]) for call in calls] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert all(call["id"].startswith("call_") and call["type"] == "function" for call in calls)

    fake.reset()
    conversation = body(
        user("weather in Paris and Oslo?"),
        {"role": "assistant", "content": "Checking.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18C"},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": [{"type": "text", "text": "9C"}]},
        tools=[WEATHER_TOOL],
    )
    answer = chat(OpenAIResponsesAdapter, backend(fake), conversation)

    assert answer["choices"][0]["finish_reason"] == "stop"  # the fake found each output's call
    assert fake.received[0].body["input"][2:] == [
        {"type": "message", "role": "assistant", "content": "Checking."},
        {
            "type": "function_call",
            "call_id": calls[0]["id"],
            "name": "get_weather",
            "arguments": calls[0]["function"]["arguments"],
        },
        {
            "type": "function_call",
            "call_id": calls[1]["id"],
            "name": "get_weather",
            "arguments": calls[1]["function"]["arguments"],
        },
        {"type": "function_call_output", "call_id": calls[0]["id"], "output": "18C"},
        {"type": "function_call_output", "call_id": calls[1]["id"], "output": "9C"},
    ]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"stop": ["END"]}, "stop sequences"),
        ({"n": 2}, "'n' must be 1"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"logprobs": True}, "log probabilities"),
    ],
)
def test_it_refuses_what_the_responses_api_cannot_express_without_calling_it(
    fake: FakeOpenAIResponses, extra: dict[str, Any], named: str
) -> None:
    with pytest.raises(UpstreamError) as caught:
        chat(OpenAIResponsesAdapter, backend(fake), body(user("hi"), **extra))

    assert (caught.value.status, caught.value.code, caught.value.retryable) == (400, "unsupported_parameter", False)
    assert named in caught.value.message
    assert fake.received == []


def test_it_refuses_audio_parts(fake: FakeOpenAIResponses) -> None:
    with pytest.raises(UpstreamError) as caught:
        chat(
            OpenAIResponsesAdapter,
            backend(fake),
            body(user([{"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}])),
        )

    assert caught.value.status == 400 and fake.received == []


# ── answers ──


@pytest.mark.parametrize(
    ("answer", "finish_reason"),
    [
        (Answer(text="partial", incomplete="max_output_tokens"), "length"),
        (Answer(text="partial", incomplete="content_filter"), "content_filter"),
        (Answer(text="fine"), "stop"),
    ],
)
def test_it_maps_incomplete_answers(fake: FakeOpenAIResponses, answer: Answer, finish_reason: str) -> None:
    fake.answer = answer

    assert chat(OpenAIResponsesAdapter, backend(fake), body(user("hi")))["choices"][0]["finish_reason"] == finish_reason
    chunks = stream(OpenAIResponsesAdapter, backend(fake), body(user("hi"), stream=True))
    assert chunks[-2]["choices"][0]["finish_reason"] == finish_reason
    assert streamed_text(chunks) == answer.text


def test_it_returns_a_refusal_as_chats_refusal(fake: FakeOpenAIResponses) -> None:
    fake.answer = Answer(refusal="I can't help with that.")

    message = chat(OpenAIResponsesAdapter, backend(fake), body(user("hi")))["choices"][0]["message"]
    chunks = stream(OpenAIResponsesAdapter, backend(fake), body(user("hi"), stream=True))

    assert (message["content"], message["refusal"]) == (None, "I can't help with that.")
    assert "".join(c["choices"][0]["delta"].get("refusal") or "" for c in chunks if c["choices"]) == "I can't help with that."


# ── streams ──


def test_it_streams_chunks_and_a_final_usage_chunk(fake: FakeOpenAIResponses) -> None:
    request = body(user("hello there"), stream=True, stream_options={"include_usage": True})
    chunks = stream(OpenAIResponsesAdapter, backend(fake), request)

    sent = fake.received[0].body
    assert (sent["stream"], sent["store"]) == (True, False)
    assert "stream_options" not in sent
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1 and chunks[0]["id"].startswith("resp_")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert streamed_text(chunks) == "echo: hello there"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def test_it_streams_tool_call_deltas(fake: FakeOpenAIResponses) -> None:
    fake.answer = Answer(text="Let me check.", tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})])

    chunks = stream(OpenAIResponsesAdapter, backend(fake), body(user("weather?"), tools=[WEATHER_TOOL], stream=True))

    assert streamed_text(chunks) == "Let me check."
    calls = streamed_tool_calls(chunks)
    assert [call["name"] for call in calls] == ["get_weather", "get_weather"]
    assert [json.loads(call["arguments"]) for call in calls] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert all(call["id"].startswith("call_") for call in calls)
    # Output indexes 2 and 3 (after the reasoning item and the message) are tool calls 0 and 1.
    indexes = [d["index"] for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls") or []]
    assert sorted(set(indexes)) == [0, 1]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


# ── errors ──


@pytest.mark.parametrize(
    ("reply", "status", "retryable"),
    [
        (
            error_reply(
                429, "Rate limit reached", kind="requests", code="rate_limit_exceeded", headers={"retry-after-ms": "1500"}
            ),
            429,
            True,
        ),
        (error_reply(500, "The server had an error", kind="server_error"), 502, True),
        (error_reply(503, "Slow down", kind="server_error"), 503, True),
        (error_reply(400, "Invalid value: 'input'", param="input"), 400, False),
        (error_reply(404, "The model 'gpt-9' does not exist", code="model_not_found"), 400, False),
    ],
)
def test_it_maps_provider_errors(fake: FakeOpenAIResponses, reply: Reply, status: int, retryable: bool) -> None:
    for call in (chat, stream):
        fake.fail_next(reply)
        with pytest.raises(UpstreamError) as caught:
            call(OpenAIResponsesAdapter, backend(fake), body(user("hi"), stream=call is stream))

        assert (caught.value.status, caught.value.retryable) == (status, retryable)
        assert caught.value.upstream_status == reply.status
        assert reply.body["error"]["message"] in caught.value.message
    if status == 429:
        assert caught.value.retry_after == 1.5


def test_it_reports_rejected_credentials_as_a_gateway_fault(fake: FakeOpenAIResponses, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_RESPONSES_KEY", "sk-wrong-responses-credential")

    with pytest.raises(UpstreamError) as caught:
        chat(OpenAIResponsesAdapter, backend(fake), body(user("hi")))

    assert (caught.value.status, caught.value.code) == (502, "upstream_auth_failed")
    assert "sk-wrong-responses-credential" not in str(caught.value)


@pytest.mark.parametrize(
    ("answer", "status", "retryable"),
    [
        (Answer(stream_error="server_error"), 502, True),
        (Answer(stream_error="rate_limit_exceeded"), 429, True),
        (Answer(stream_error="invalid_prompt"), 400, False),
        (Answer(failed="server_error"), 502, True),
        (Answer(failed="bio_policy"), 400, False),
    ],
)
def test_it_raises_error_events_before_yielding_anything(
    fake: FakeOpenAIResponses, answer: Answer, status: int, retryable: bool
) -> None:
    fake.answer = answer
    seen: list[dict[str, Any]] = []

    with pytest.raises(UpstreamError) as caught:
        stream(OpenAIResponsesAdapter, backend(fake), body(user("hi"), stream=True), into=seen)

    assert (caught.value.status, caught.value.retryable) == (status, retryable)
    assert (answer.stream_error or answer.failed or "") in caught.value.message
    assert seen == []  # nothing reached the client, so the caller may still retry or fail over


def test_it_raises_a_failed_response(fake: FakeOpenAIResponses) -> None:
    fake.answer = Answer(failed="server_error")

    with pytest.raises(UpstreamError) as caught:
        chat(OpenAIResponsesAdapter, backend(fake), body(user("hi")))

    assert (caught.value.status, caught.value.retryable) == (502, True)


def test_it_fails_a_stream_that_breaks_off(fake: FakeOpenAIResponses) -> None:
    fake.answer = Answer(text="one two three four five six", reasoning=False)
    fake.answer.drop_after = 6  # created, in_progress, item added, part added, two deltas
    seen: list[dict[str, Any]] = []

    with pytest.raises(UpstreamError) as caught:
        stream(OpenAIResponsesAdapter, backend(fake), body(user("hi"), stream=True), into=seen)

    assert (caught.value.status, caught.value.retryable) == (502, True)
    assert streamed_text(seen) == "one two "


# ── Azure ──


def test_azure_sends_the_v1_responses_request_with_its_api_key(
    fake: FakeOpenAIResponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    azure = FakeOpenAIResponses(api_key=KEY)
    # Azure takes the key in `api-key`; the fake checks a bearer token, so a scripted reply
    # answers and the request is asserted as sent.
    azure.start()
    try:
        azure.fail_next(Reply(body=azure.respond(_as_bearer(azure, "/v1/responses")).body))
        config = BackendConfig(
            name="az", kind="azure_openai_responses", base_url=f"{azure.base_url}/openai/v1/", location="cloud",
            api_key_env="TEST_RESPONSES_KEY", options={"api_version": "preview"},
        )  # fmt: skip
        result = chat(AzureOpenAIResponsesAdapter, config, body(user("hi")))
    finally:
        azure.stop()

    received = azure.received[-1]
    assert received.path == "/openai/v1/responses"
    assert received.query == {"api-version": ["preview"]}
    assert received.headers["api-key"] == KEY and "authorization" not in received.headers
    assert received.body["store"] is False and received.body["model"] == "gpt-5-codex"
    assert result["choices"][0]["message"]["content"] == "echo: hi"


def _as_bearer(fake: FakeOpenAIResponses, path: str) -> Received:
    request = {"model": "gpt-5-codex", "input": [{"type": "message", "role": "user", "content": "hi"}], "store": False}
    return Received("POST", path, {}, {"authorization": f"Bearer {fake.api_key}"}, request)
