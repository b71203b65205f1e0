"""The Gemini adapter against a fake Gemini API over real HTTP and real SSE."""

from __future__ import annotations

import array
import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from routing.adapters import ADAPTERS
from routing.adapters.base import BackendConfig, UpstreamError
from routing.adapters.gemini import GeminiAdapter
from tests.fakes.adapters import chat, embeddings, stream, streamed_text, streamed_tool_calls
from tests.fakes.base import Reply
from tests.fakes.gemini import Answer, FakeGemini

KEY = "AIza-test-credential-51c0ffee"
BOUND = "You are the claims assistant. Never reveal policy numbers."
MODEL = "gemini-2.5-flash"
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
def _server() -> Iterator[FakeGemini]:
    fake = FakeGemini(api_key=KEY)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(_server: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> FakeGemini:
    monkeypatch.setenv("TEST_GEMINI_KEY", KEY)
    _server.reset()
    return _server


def backend(fake: FakeGemini, **options: Any) -> BackendConfig:
    return BackendConfig(
        name="gemini",
        kind="gemini",
        base_url=f"{fake.base_url}/v1beta",
        location="cloud",
        api_key_env="TEST_GEMINI_KEY",
        options=options,
    )


def body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "system", "content": BOUND}, *messages], **extra}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def test_it_is_registered_under_its_kind() -> None:
    assert ADAPTERS["gemini"] is GeminiAdapter


def test_it_sends_the_generate_content_request(fake: FakeGemini) -> None:
    conversation = body(
        {"role": "developer", "content": "Answer briefly."},
        user("hello"),
        {"role": "assistant", "content": "hi, what do you need?"},
        user("a summary"),
        max_tokens=64,
        temperature=0.3,
        top_p=0.8,
        stop=["END", "STOP"],
    )

    chat(GeminiAdapter, backend(fake), conversation)

    (received,) = fake.received
    assert received.path == f"/v1beta/models/{MODEL}:generateContent"
    assert received.headers["x-goog-api-key"] == KEY
    assert "key" not in received.query  # never in the URL, where logs and errors would carry it
    assert received.body == {
        "systemInstruction": {"parts": [{"text": BOUND}, {"text": "Answer briefly."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "hello"}]},
            {"role": "model", "parts": [{"text": "hi, what do you need?"}]},
            {"role": "user", "parts": [{"text": "a summary"}]},
        ],
        "generationConfig": {"maxOutputTokens": 64, "temperature": 0.3, "topP": 0.8, "stopSequences": ["END", "STOP"]},
    }


def test_it_returns_a_chat_completion_with_usage(fake: FakeGemini) -> None:
    result = chat(GeminiAdapter, backend(fake), body(user("hello there")))

    assert result["object"] == "chat.completion"
    assert result["model"] == MODEL
    (choice,) = result["choices"]
    assert choice["message"] == {"role": "assistant", "content": "echo: hello there", "refusal": None}
    assert choice["finish_reason"] == "stop"
    # The fake counts words: 9 in the bound prompt + 2 from the user; 3 in the answer.
    assert result["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def test_it_bills_thinking_tokens_as_completion_tokens(fake: FakeGemini) -> None:
    fake.answer = Answer(text="ok", thoughts_tokens=20)

    result = chat(GeminiAdapter, backend(fake), body(user("hello there")))

    assert result["usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 21,
        "total_tokens": 32,
        "completion_tokens_details": {"reasoning_tokens": 20},
    }


def test_it_bills_tool_use_prompt_tokens_as_prompt_tokens(fake: FakeGemini) -> None:
    fake.answer = Answer(text="ok", tool_use_prompt_tokens=7)

    result = chat(GeminiAdapter, backend(fake), body(user("hello there")))

    assert result["usage"] == {"prompt_tokens": 18, "completion_tokens": 1, "total_tokens": 19}


def test_it_streams_chunks_and_a_final_usage_chunk(fake: FakeGemini) -> None:
    request = body(user("hello there"), stream=True, stream_options={"include_usage": True})
    chunks = stream(GeminiAdapter, backend(fake), request)

    (received,) = fake.received
    assert received.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert received.query == {"alt": ["sse"]}
    assert "stream" not in received.body and "stream_options" not in received.body
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert streamed_text(chunks) == "echo: hello there"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def test_it_sends_function_declarations_and_returns_tool_calls(fake: FakeGemini) -> None:
    fake.answer = Answer(text="", function_calls=[("get_weather", {"city": "Paris"})])
    named = {"type": "function", "function": {"name": "get_weather"}}

    result = chat(GeminiAdapter, backend(fake), body(user("weather?"), tools=[WEATHER_TOOL], tool_choice=named))

    sent = fake.received[0].body
    assert sent["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"],
                }
            ]
        }
    ]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    (choice,) = result["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


@pytest.mark.parametrize(("tool_choice", "mode"), [("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")])
def test_it_maps_tool_choice_modes(fake: FakeGemini, tool_choice: str, mode: str) -> None:
    chat(GeminiAdapter, backend(fake), body(user("weather?"), tools=[WEATHER_TOOL], tool_choice=tool_choice))

    assert fake.received[0].body["toolConfig"] == {"functionCallingConfig": {"mode": mode}}


def test_it_streams_tool_calls(fake: FakeGemini) -> None:
    fake.answer = Answer(text="Checking.", function_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})])

    chunks = stream(GeminiAdapter, backend(fake), body(user("weather?"), tools=[WEATHER_TOOL], stream=True))

    assert streamed_text(chunks) == "Checking."
    calls = streamed_tool_calls(chunks)
    assert [json.loads(call["arguments"]) for call in calls] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert len({call["id"] for call in calls}) == 2
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_it_round_trips_tool_results_and_thought_signatures(fake: FakeGemini) -> None:
    fake.answer = Answer(text="", function_calls=[("get_weather", {"city": "Paris"})], thought_signature="c2lnbmF0dXJlLTE=")
    first = chat(GeminiAdapter, backend(fake), body(user("weather?"), tools=[WEATHER_TOOL]))
    assistant = first["choices"][0]["message"]
    fake.reset()

    result = chat(
        GeminiAdapter,
        backend(fake),
        body(
            user("weather?"),
            assistant,
            {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"], "content": '{"temp_c": 18}'},
            {"role": "user", "content": "and tomorrow?"},
            tools=[WEATHER_TOOL],
        ),
    )

    assert result["choices"][0]["message"]["content"] == "echo: and tomorrow?"
    contents = fake.received[0].body["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnbmF0dXJlLTE="}],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}}, {"text": "and tomorrow?"}],
    }


def test_it_wraps_a_tool_result_that_is_not_a_json_object(fake: FakeGemini) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    chat(
        GeminiAdapter,
        backend(fake),
        body(
            user("weather?"),
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        ),
    )

    part = fake.received[0].body["contents"][2]["parts"][0]
    assert part == {"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}}


def test_it_sends_inline_images(fake: FakeGemini) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]

    chat(GeminiAdapter, backend(fake), body(user(content)))

    assert fake.received[0].body["contents"][0]["parts"] == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
    ]


@pytest.mark.parametrize(
    "message",
    [
        user([{"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]),
        {"role": "tool", "tool_call_id": "call_unknown", "content": "18C"},
    ],
)
def test_it_rejects_what_it_cannot_translate_without_calling_gemini(fake: FakeGemini, message: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError) as caught:
        chat(GeminiAdapter, backend(fake), body(user("hi"), message))

    assert caught.value.status == 400
    assert fake.received == []


def test_it_maps_response_format_to_json_output(fake: FakeGemini) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}

    chat(GeminiAdapter, backend(fake), body(user("hi"), response_format=response_format))

    config = fake.received[0].body["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}


def test_it_passes_the_backends_safety_settings(fake: FakeGemini) -> None:
    settings = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_LOW_AND_ABOVE"}]

    chat(GeminiAdapter, backend(fake, safety_settings=settings), body(user("hi")))

    assert fake.received[0].body["safetySettings"] == settings


def test_it_turns_a_blocked_prompt_into_a_content_filter_error(fake: FakeGemini) -> None:
    fake.answer = Answer(block_reason="SAFETY")
    seen: list[dict[str, Any]] = []

    for call in (chat, stream):
        with pytest.raises(UpstreamError) as caught:
            if call is stream:
                stream(GeminiAdapter, backend(fake), body(user("something"), stream=True), into=seen)
            else:
                chat(GeminiAdapter, backend(fake), body(user("something")))

        assert (caught.value.status, caught.value.code, caught.value.retryable) == (400, "content_filter", False)
        assert "SAFETY" in caught.value.message
    assert seen == []


@pytest.mark.parametrize("reason", ["SAFETY", "PROHIBITED_CONTENT", "RECITATION"])
def test_it_reports_a_withheld_answer_as_content_filter(fake: FakeGemini, reason: str) -> None:
    fake.answer = Answer(text="", finish_reason=reason)

    result = chat(GeminiAdapter, backend(fake), body(user("something")))
    chunks = stream(GeminiAdapter, backend(fake), body(user("something"), stream=True))

    assert result["choices"][0]["finish_reason"] == "content_filter"
    assert result["choices"][0]["message"]["content"] == ""
    assert chunks[-2]["choices"][0]["finish_reason"] == "content_filter"
    assert chunks[-1]["usage"]["prompt_tokens"] == 10


def test_it_maps_max_tokens_to_length(fake: FakeGemini) -> None:
    fake.answer = Answer(text="cut short", finish_reason="MAX_TOKENS")

    assert chat(GeminiAdapter, backend(fake), body(user("hi")))["choices"][0]["finish_reason"] == "length"


def error_reply(code: int, status: str, message: str) -> Reply:
    return Reply(status=code, body={"error": {"code": code, "message": message, "status": status}})


@pytest.mark.parametrize(
    ("reply", "status", "retryable"),
    [
        (error_reply(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."), 429, True),
        (error_reply(503, "UNAVAILABLE", "The model is overloaded. Please try again later."), 503, True),
        (error_reply(500, "INTERNAL", "An internal error has occurred."), 502, True),
        (error_reply(400, "INVALID_ARGUMENT", "Request contains an invalid argument."), 400, False),
        (error_reply(404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta"), 400, False),
    ],
)
def test_it_maps_provider_errors(fake: FakeGemini, reply: Reply, status: int, retryable: bool) -> None:
    for call in (chat, stream):
        fake.fail_next(reply)
        with pytest.raises(UpstreamError) as caught:
            call(GeminiAdapter, backend(fake), body(user("hi"), stream=call is stream))

        assert (caught.value.status, caught.value.retryable) == (status, retryable)
        assert reply.body["error"]["message"] in caught.value.message


def test_it_reports_an_invalid_key_as_a_gateway_fault_without_the_key(fake: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_GEMINI_KEY", "AIza-wrong-credential-9999")

    with pytest.raises(UpstreamError) as caught:
        chat(GeminiAdapter, backend(fake), body(user("hi")))

    assert (caught.value.status, caught.value.code) == (502, "upstream_auth_failed")
    assert "AIza-wrong-credential-9999" not in str(caught.value)


def test_it_fails_on_an_error_event_mid_stream(fake: FakeGemini) -> None:
    fake.answer = Answer(text="one two three", stream_error=503)
    seen: list[dict[str, Any]] = []

    with pytest.raises(UpstreamError) as caught:
        stream(GeminiAdapter, backend(fake), body(user("hi"), stream=True), into=seen)

    assert (caught.value.status, caught.value.retryable) == (503, True)
    assert streamed_text(seen) == "one "


def test_it_fails_a_stream_that_breaks_off(fake: FakeGemini) -> None:
    fake.answer = Answer(text="one two three four", drop_after=2)
    seen: list[dict[str, Any]] = []

    with pytest.raises(UpstreamError) as caught:
        stream(GeminiAdapter, backend(fake), body(user("hi"), stream=True), into=seen)

    assert caught.value.status == 502
    assert streamed_text(seen) == "one two "


def test_it_embeds_one_text_with_embed_content(fake: FakeGemini) -> None:
    result = embeddings(GeminiAdapter, backend(fake), {"model": "gemini-embedding-001", "input": "hello world", "dimensions": 4})

    (received,) = fake.received
    assert received.path == "/v1beta/models/gemini-embedding-001:embedContent"
    assert received.body == {"content": {"parts": [{"text": "hello world"}]}, "outputDimensionality": 4}
    assert result["object"] == "list"
    (item,) = result["data"]
    assert item["object"] == "embedding" and item["index"] == 0 and len(item["embedding"]) == 4
    assert result["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_it_embeds_many_texts_with_batch_embed_contents(fake: FakeGemini) -> None:
    config = backend(fake, embedding_task_type="RETRIEVAL_DOCUMENT")
    result = embeddings(GeminiAdapter, config, {"model": "gemini-embedding-001", "input": ["a", "b"]})

    (received,) = fake.received
    assert received.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert received.body == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "taskType": "RETRIEVAL_DOCUMENT"},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "taskType": "RETRIEVAL_DOCUMENT"},
        ]
    }
    assert [item["index"] for item in result["data"]] == [0, 1]
    assert result["data"][0]["embedding"] != result["data"][1]["embedding"]


def test_it_encodes_embeddings_as_base64_floats_when_asked(fake: FakeGemini) -> None:
    plain = embeddings(GeminiAdapter, backend(fake), {"model": "gemini-embedding-001", "input": "hello"})
    request = {"model": "gemini-embedding-001", "input": "hello", "encoding_format": "base64"}
    encoded = embeddings(GeminiAdapter, backend(fake), request)

    decoded = array.array("f", base64.b64decode(encoded["data"][0]["embedding"])).tolist()
    assert decoded == pytest.approx(plain["data"][0]["embedding"], rel=1e-6)


def test_it_rejects_token_id_input_for_embeddings(fake: FakeGemini) -> None:
    with pytest.raises(UpstreamError) as caught:
        embeddings(GeminiAdapter, backend(fake), {"model": "gemini-embedding-001", "input": [[1, 2, 3]]})

    assert caught.value.status == 400
    assert fake.received == []
