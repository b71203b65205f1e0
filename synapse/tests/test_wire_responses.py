"""The Responses API door: request translation, answers and event streams, checked against
the official SDK's own types, decoders and stream accumulator (openai, pinned in
requirements-dev.txt). Pure: no database, no server; the SDK reads this module's bytes
through an in-memory transport, so what it parses is exactly what the gateway would send."""

from __future__ import annotations

import json
import math
import random
import typing
from collections.abc import Callable, Iterable
from typing import Any

import httpx2
import openai
import pydantic
import pytest
import typing_extensions
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.responses import FunctionTool, Response, ResponseOutputMessage, ResponseStreamEvent
from openai.types.responses.response_create_params import ResponseCreateParamsStreaming, ToolChoice
from openai.types.responses.response_input_param import ResponseInputItemParam
from openai.types.responses.tool_param import ToolParam

from audit.models import Decision
from synapse.errors import GatewayError, rate_limited
from synapse.schemas import validate_chat
from synapse.wire.responses import ResponsesWire
from synapse.wire.responses_request import BUILTIN_TOOLS, KNOWN_FIELDS
from teams.limits import BreachKind

WIRE = ResponsesWire()
EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
# The SDK's event class for each event type, from the SDK's own union.
EVENT_CLASSES: dict[str, type[Any]] = {
    typing.get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}
CHAT_FIELDS = {
    "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "max_tokens", "temperature", "top_p",
    "user", "service_tier", "stream", "response_format", "verbosity", "reasoning_effort",
}  # fmt: skip


def to_chat(**body: Any) -> dict[str, Any]:
    chat = WIRE.to_chat(body)
    validate_chat(chat)
    assert set(chat) <= CHAT_FIELDS
    return chat


def refusal(**body: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        WIRE.to_chat(body)
    assert caught.value.status == 400
    assert caught.value.body()["error"]["type"] == "invalid_request_error"
    return caught.value


def user(text: str = "hi") -> dict[str, Any]:
    return {"role": "user", "content": text}


TOOL = {"type": "function", "name": "lookup", "description": "Find a claim.", "parameters": {"type": "object", "properties": {}}}


# ── the SDK, reading this module's bytes ──────────────────────────────────────────────


def sdk(respond: Callable[[dict[str, Any]], httpx2.Response], seen: list[dict[str, Any]] | None = None) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if seen is not None:
            seen.append(body)
        return respond(body)

    return openai.OpenAI(
        api_key="syn_test",
        base_url="http://gateway.test/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
        _strict_response_validation=True,
    )


def sse_response(frames: Iterable[bytes]) -> httpx2.Response:
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=b"".join(frames))


# ── chat answers as the pipeline hands them over ───────────────────────────────────────


def completion(
    content: str | None = "Hello there.",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    refusal_text: str | None = None,
    finish_reason: str = "stop",
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal_text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "claims-model",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage if usage is not None else {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
    }


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def delta(fields: dict[str, Any], finish_reason: str | None = None, index: int = 0) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "claims-model",
        "choices": [{"index": index, "delta": fields, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(prompt: int = 11, completion_tokens: int = 5) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "claims-model",
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens},
    }


def encode(
    chunks: list[dict[str, Any]], *, request: dict[str, Any] | None = None, end: GatewayError | None = None
) -> list[bytes]:
    encoder = WIRE.encoder(request=request or {"model": "claims-model", "input": "hi"}, model="claims-model", request_id="req_1")
    frames: list[bytes] = []
    for chunk in chunks:
        frames.extend(encoder.chunk(chunk))
    frames.extend(encoder.finish() if end is None else encoder.error(end))
    # Nothing more once the stream has ended, whatever the pipeline calls.
    assert list(encoder.chunk(delta({"content": "late"}))) == []
    assert list(encoder.finish()) == []
    return frames


def parse(frames: list[bytes]) -> list[Any]:
    """Each frame as the SDK's event model; checks the SSE framing and the sequence numbers."""
    events = []
    for number, frame in enumerate(frames):
        text = frame.decode()
        assert text.endswith("\n\n") and text.count("\n") == 3
        head, data = text[:-2].split("\n")
        payload = json.loads(data.removeprefix("data: "))
        assert head == f"event: {payload['type']}"
        event = EVENTS.validate_python(payload)
        assert type(event) is EVENT_CLASSES[payload["type"]]
        assert event.sequence_number == number
        events.append(event)
    return events


def accumulate(events: list[Any]) -> Any:
    """The SDK's own stream accumulator over the events; its final response."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=openai.omit, text_format=openai.omit)
    for event in events:
        state.handle_event(event)
    return state._completed_response


def kinds(events: list[Any]) -> list[str]:
    return [event.type for event in events]


# ── request: input items ───────────────────────────────────────────────────────────────


def test_it_reads_a_string_input_as_one_user_message() -> None:
    assert to_chat(model="claims-model", input="What is my claim status?") == {
        "model": "claims-model",
        "messages": [{"role": "user", "content": "What is my claim status?"}],
    }


def test_it_reads_messages_with_and_without_a_type() -> None:
    chat = to_chat(
        model="m",
        input=[
            {"role": "developer", "content": "Answer briefly."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello"}]},
            {"role": "assistant", "content": "Hi."},
            {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be polite."}]},
        ],
    )
    assert chat["messages"] == [
        {"role": "developer", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
        {"role": "assistant", "content": "Hi."},
        {"role": "system", "content": [{"type": "text", "text": "Be polite."}]},
    ]


def test_it_puts_instructions_first_and_keeps_the_clients_system_items_in_order() -> None:
    chat = to_chat(
        model="m",
        instructions="You help with claims.",
        input=[user("first"), {"role": "system", "content": "sys"}, {"role": "developer", "content": "dev"}],
    )
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "system", "developer"]
    assert chat["messages"][0] == {"role": "system", "content": "You help with claims."}
    assert [m["content"] for m in chat["messages"][1:]] == ["first", "sys", "dev"]


def test_it_translates_images_and_inline_files() -> None:
    data_url = "data:image/png;base64,iVBORw0KGgo="
    chat = to_chat(
        model="m",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Compare"},
                    {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
                    {"type": "input_image", "image_url": data_url, "detail": "original"},
                    {"type": "input_image", "image_url": data_url},
                    {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "claim.pdf"},
                ],
            }
        ],
    )
    assert chat["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": data_url, "detail": "high"}},
        {"type": "image_url", "image_url": {"url": data_url}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "claim.pdf"}},
    ]


def test_it_reads_an_earlier_answer_with_text_and_refusal_as_assistant_text() -> None:
    chat = to_chat(
        model="m",
        input=[
            user(),
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "Part one. ", "annotations": []},
                    {"type": "refusal", "refusal": "I can't share that."},
                ],
            },
            user("ok"),
        ],
    )
    assert chat["messages"][1] == {"role": "assistant", "content": "Part one. I can't share that."}


def test_it_merges_function_calls_into_the_assistant_turn_before_them() -> None:
    chat = to_chat(
        model="m",
        tools=[TOOL],
        input=[
            user("Check both claims."),
            {"role": "assistant", "content": "Looking them up."},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
            {"type": "function_call", "call_id": "call_a", "name": "lookup", "arguments": '{"id": 1}'},
            {
                "type": "function_call",
                "id": "fc_2",
                "call_id": "call_b",
                "name": "lookup",
                "arguments": '{"id": 2}',
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": "call_a", "output": "open"},
            {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "closed"}]},
            {"type": "function_call", "call_id": "call_c", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_c", "output": []},
        ],
    )
    assert chat["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Looking them up.",
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "lookup", "arguments": '{"id": 1}'}},
                {"id": "call_b", "type": "function", "function": {"name": "lookup", "arguments": '{"id": 2}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "open"},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "closed"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_c", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_c", "content": ""},
    ]


def test_it_drops_reasoning_items() -> None:
    chat = to_chat(
        model="m", input=[{"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "x"}]}, user()]
    )
    assert chat["messages"] == [user()]


# ── request: tools and settings ────────────────────────────────────────────────────────


def test_it_translates_function_tools_and_forwards_nothing_else_of_them() -> None:
    chat = to_chat(
        model="m",
        input="hi",
        tools=[
            {**TOOL, "strict": True, "defer_loading": False, "output_schema": {"type": "object"}},
            {"type": "function", "name": "ping", "parameters": None, "strict": None},
        ],
        parallel_tool_calls=False,
    )
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {"name": "lookup", "description": "Find a claim.", "parameters": TOOL["parameters"], "strict": True},
        },
        {"type": "function", "function": {"name": "ping"}},
    ]
    assert chat["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "name": "ping"}, {"type": "function", "function": {"name": "ping"}}),
    ],
)
def test_it_translates_tool_choice(choice: Any, expected: Any) -> None:
    chat = to_chat(model="m", input="hi", tools=[TOOL, {"type": "function", "name": "ping"}], tool_choice=choice)
    assert chat["tool_choice"] == expected
    assert len(chat["tools"]) == 2


def test_it_narrows_the_tools_to_the_allowed_ones() -> None:
    chat = to_chat(
        model="m",
        input="hi",
        tools=[TOOL, {"type": "function", "name": "ping"}],
        tool_choice={"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "ping"}]},
    )
    assert chat["tool_choice"] == "required"
    assert [tool["function"]["name"] for tool in chat["tools"]] == ["ping"]


def test_it_leaves_tool_settings_out_when_there_are_no_tools() -> None:
    chat = to_chat(model="m", input="hi", tool_choice="auto", parallel_tool_calls=True, tools=[])
    assert "tools" not in chat and "tool_choice" not in chat and "parallel_tool_calls" not in chat


def test_it_translates_sampling_limits_and_identity() -> None:
    chat = to_chat(
        model="m",
        input="hi",
        max_output_tokens=300,
        temperature=0.2,
        top_p=0.9,
        safety_identifier="user-hash",
        user="legacy",
        service_tier="flex",
        stream=True,
        reasoning={"effort": "low", "summary": "auto"},
        text={"verbosity": "low"},
    )
    assert chat == {
        "model": "m",
        "messages": [user()],
        "max_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "user-hash",
        "service_tier": "flex",
        "stream": True,
        "reasoning_effort": "low",
        "verbosity": "low",
    }
    assert to_chat(model="m", input="hi", user="legacy", stream=False) == {"model": "m", "messages": [user()], "user": "legacy"}


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"type": "json_object"}),
        (
            {"type": "json_schema", "name": "claim", "schema": {"type": "object"}, "strict": True, "description": "A claim."},
            {
                "type": "json_schema",
                "json_schema": {"name": "claim", "schema": {"type": "object"}, "strict": True, "description": "A claim."},
            },
        ),
    ],
)
def test_it_translates_the_text_format(form: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert to_chat(model="m", input="hi", text={"format": form}).get("response_format") == expected


def test_it_accepts_and_drops_what_needs_no_forwarding() -> None:
    chat = to_chat(
        model="m",
        input="hi",
        store=True,
        metadata={"ticket": "T-1"},
        truncation="auto",
        include=["reasoning.encrypted_content", "web_search_call.action.sources"],
        max_tool_calls=3,
        stream_options={"include_obfuscation": False},
        prompt_cache_key="k",
        prompt_cache_retention="24h",
        prompt_cache_options={"mode": "implicit", "ttl": "30m"},
        image={"context_compression": "auto"},
        background=False,
        top_logprobs=0,
        previous_response_id=None,
        conversation=None,
        reasoning={"effort": None, "context": "current_turn", "mode": "standard"},
    )
    assert chat == {"model": "m", "messages": [user()]}


def test_it_reads_what_the_official_sdk_sends() -> None:
    seen: list[dict[str, Any]] = []
    client = sdk(lambda body: httpx2.Response(200, json=WIRE.from_chat(completion(), request=body)), seen)
    client.responses.create(
        model="claims-model",
        instructions="Be brief.",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Look up 7"}]},
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": '{"id": 7}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "open"},
        ],
        tools=[{"type": "function", "name": "lookup", "parameters": {"type": "object"}, "strict": True}],
        tool_choice={"type": "function", "name": "lookup"},
        max_output_tokens=64,
        store=False,
        metadata={"ticket": "T-1"},
    )
    chat = to_chat(**seen[0])
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool"]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert chat["max_tokens"] == 64


def test_an_answers_output_items_are_the_next_requests_input() -> None:
    # The agent loop of the SDK's docs: `input += response.output`, then the tool results.
    seen: list[dict[str, Any]] = []
    answer = completion("Checking.", tool_calls=[call("call_1", "lookup", '{"id": 7}')], finish_reason="tool_calls")
    client = sdk(lambda body: httpx2.Response(200, json=WIRE.from_chat(answer, request=body)), seen)
    first = client.responses.create(model="m", input="Look up 7", tools=[TOOL])  # type: ignore[list-item]  # the SDK's FunctionToolParam requires `strict`; the API does not
    client.responses.create(
        model="m",
        tools=[TOOL],  # type: ignore[list-item]  # the SDK's FunctionToolParam requires `strict`; the API does not
        input=[
            {"role": "user", "content": "Look up 7"},
            *first.output,  # type: ignore[list-item]  # the documented `input += response.output`, which the SDK types omit
            {"type": "function_call_output", "call_id": "call_1", "output": "open"},
        ],
    )
    assert to_chat(**seen[1])["messages"] == [
        {"role": "user", "content": "Look up 7"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [call("call_1", "lookup", '{"id": 7}')]},
        {"role": "tool", "tool_call_id": "call_1", "content": "open"},
    ]


# ── request: refusals ──────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "hi"}, "model", "missing_required_parameter"),
        ({"model": 7, "input": "hi"}, "model", "invalid_type"),
        ({"model": "m"}, "input", "missing_required_parameter"),
        ({"model": "m", "input": 5}, "input", "invalid_type"),
        ({"model": "m", "input": []}, "input", "invalid_value"),
        ({"model": "m", "input": [{"type": "reasoning", "summary": []}]}, "input", "invalid_value"),
        ({"model": "m", "input": ["hi"]}, "input[0]", "invalid_type"),
        ({"model": "m", "input": [{"content": "hi"}]}, "input[0].type", "missing_required_parameter"),
        ({"model": "m", "input": [user(), {"type": "item_reference", "id": "msg_1"}]}, "input[1].id", "stateless_gateway"),
        ({"model": "m", "input": [{"id": "msg_1"}]}, "input[0].id", "stateless_gateway"),
        (
            {"model": "m", "input": [{"type": "computer_call_output", "call_id": "c", "output": {}}]},
            "input[0].type",
            "unsupported_input_item",
        ),
        ({"model": "m", "input": [{"type": "web_search_call", "id": "ws"}]}, "input[0].type", "unsupported_input_item"),
        ({"model": "m", "input": [{"type": "mcp_call", "id": "x"}]}, "input[0].type", "unsupported_input_item"),
        ({"model": "m", "input": [{"type": "compaction", "encrypted_content": "x"}]}, "input[0].type", "unsupported_input_item"),
        ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "input[0].role", "invalid_value"),
        ({"model": "m", "input": [{"role": "user", "content": 5}]}, "input[0].content", "invalid_type"),
        ({"model": "m", "input": [{"role": "user", "content": [5]}]}, "input[0].content[0]", "invalid_type"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "input[0].content[0].type",
            "invalid_value",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": 1}]}]},
            "input[0].content[0].text",
            "invalid_type",
        ),
        (
            {
                "model": "m",
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_text", "text": "a"}, {"type": "input_image", "file_id": "file-1"}],
                    }
                ],
            },
            "input[0].content[1].file_id",
            "unsupported_parameter",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input[0].content[0].image_url",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": ""}]}]},
            "input[0].content[0].image_url",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/a.png", "detail": "ultra"}]}
                ],
            },
            "input[0].content[0].detail",
            "invalid_value",
        ),
        (
            {"model": "m", "input": [{"role": "system", "content": [{"type": "input_image", "image_url": "https://x/a.png"}]}]},
            "input[0].content[0].type",
            "invalid_value",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]},
            "input[0].content[0].type",
            "invalid_value",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_url": "https://x/a.pdf"}]}]},
            "input[0].content[0].file_url",
            "unsupported_parameter",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]},
            "input[0].content[0].file_id",
            "unsupported_parameter",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
            "input[0].content[0].file_data",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
            "input[0].arguments",
            "invalid_type",
        ),
        (
            {"model": "m", "input": [{"type": "function_call_output", "output": "x"}]},
            "input[0].call_id",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": 3}]},
            "input[0].output",
            "invalid_type",
        ),
        (
            {
                "model": "m",
                "input": [
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "input_image", "image_url": "https://x"}],
                    }
                ],
            },
            "input[0].output[0].type",
            "unsupported_parameter",
        ),
        ({"model": "m", "input": "hi", "tools": {"type": "function"}}, "tools", "invalid_type"),
        ({"model": "m", "input": "hi", "tools": [TOOL, {"type": "retrieval"}]}, "tools[1].type", "invalid_value"),
        ({"model": "m", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name", "missing_required_parameter"),
        ({"model": "m", "input": "hi", "tools": [{"type": "function", "name": ""}]}, "tools[0].name", "invalid_value"),
        (
            {"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": "{}"}]},
            "tools[0].parameters",
            "invalid_type",
        ),
        (
            {"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f", "strict": "yes"}]},
            "tools[0].strict",
            "invalid_type",
        ),
        (
            {"model": "m", "input": "hi", "tools": [TOOL], "tool_choice": {"type": "web_search_preview"}},
            "tool_choice.type",
            "unsupported_tool",
        ),
        (
            {"model": "m", "input": "hi", "tools": [TOOL], "tool_choice": {"type": "mcp", "server_label": "x"}},
            "tool_choice.type",
            "unsupported_tool",
        ),
        (
            {"model": "m", "input": "hi", "tools": [TOOL], "tool_choice": {"type": "function", "name": "other"}},
            "tool_choice.name",
            "invalid_value",
        ),
        ({"model": "m", "input": "hi", "tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
        ({"model": "m", "input": "hi", "tool_choice": "required"}, "tool_choice", "invalid_value"),
        (
            {
                "model": "m",
                "input": "hi",
                "tools": [TOOL],
                "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "file_search"}]},
            },
            "tool_choice.tools[0]",
            "invalid_value",
        ),
        ({"model": "m", "input": "hi", "previous_response_id": "resp_1"}, "previous_response_id", "stateless_gateway"),
        ({"model": "m", "input": "hi", "conversation": "conv_1"}, "conversation", "stateless_gateway"),
        ({"model": "m", "input": "hi", "conversation": {"id": "conv_1"}}, "conversation", "stateless_gateway"),
        ({"model": "m", "input": "hi", "background": True}, "background", "stateless_gateway"),
        ({"model": "m", "input": "hi", "prompt": {"id": "pmpt_1"}}, "prompt", "unsupported_parameter"),
        ({"model": "m", "input": "hi", "top_logprobs": 5}, "top_logprobs", "unsupported_parameter"),
        ({"model": "m", "input": "hi", "include": ["message.output_text.logprobs"]}, "include[0]", "unsupported_parameter"),
        ({"model": "m", "input": "hi", "include": ["everything"]}, "include[0]", "invalid_value"),
        ({"model": "m", "input": "hi", "include": "reasoning.encrypted_content"}, "include", "invalid_type"),
        ({"model": "m", "input": "hi", "access_programs": {"cyber": "standard"}}, "access_programs", "unsupported_parameter"),
        (
            {"model": "m", "input": "hi", "context_management": [{"type": "compaction"}]},
            "context_management",
            "unsupported_parameter",
        ),
        ({"model": "m", "input": "hi", "moderation": {"model": "omni-moderation-latest"}}, "moderation", "unsupported_parameter"),
        (
            {"model": "m", "input": "hi", "prompt_cache_options": {"prewarm": True}},
            "prompt_cache_options.prewarm",
            "unsupported_parameter",
        ),
        ({"model": "m", "input": "hi", "messages": []}, "messages", "unknown_parameter"),
        ({"model": "m", "input": "hi", "temperature": 2.5}, "temperature", "invalid_value"),
        ({"model": "m", "input": "hi", "temperature": math.nan}, "temperature", "invalid_value"),
        ({"model": "m", "input": "hi", "top_p": -0.1}, "top_p", "invalid_value"),
        ({"model": "m", "input": "hi", "max_output_tokens": 0}, "max_output_tokens", "invalid_value"),
        ({"model": "m", "input": "hi", "max_output_tokens": True}, "max_output_tokens", "invalid_value"),
        ({"model": "m", "input": "hi", "stream": "yes"}, "stream", "invalid_type"),
        ({"model": "m", "input": "hi", "store": "no"}, "store", "invalid_type"),
        ({"model": "m", "input": "hi", "instructions": ["be brief"]}, "instructions", "invalid_type"),
        ({"model": "m", "input": "hi", "truncation": "sometimes"}, "truncation", "invalid_value"),
        ({"model": "m", "input": "hi", "service_tier": "gold"}, "service_tier", "invalid_value"),
        ({"model": "m", "input": "hi", "text": {"format": {"type": "xml"}}}, "text.format.type", "invalid_value"),
        (
            {"model": "m", "input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}},
            "text.format.schema",
            "missing_required_parameter",
        ),
        ({"model": "m", "input": "hi", "text": {"verbosity": "loud"}}, "text.verbosity", "invalid_value"),
        ({"model": "m", "input": "hi", "reasoning": {"effort": "huge"}}, "reasoning.effort", "invalid_value"),
        ({"model": "m", "input": "hi", "reasoning": {"mode": "pro"}}, "reasoning.mode", "unsupported_parameter"),
        ({"model": "m", "input": "hi", "metadata": {"ticket": 7}}, "metadata.ticket", "invalid_value"),
        ({"model": "m", "input": "hi", "metadata": {str(n): "v" for n in range(17)}}, "metadata", "invalid_value"),
    ],
)
def test_it_refuses_naming_the_field(body: dict[str, Any], param: str, code: str) -> None:
    error = refusal(**body)
    assert (error.param, error.code) == (param, code)
    assert error.message


@pytest.mark.parametrize("kind", sorted(BUILTIN_TOOLS))
def test_it_refuses_built_in_tools(kind: str) -> None:
    error = refusal(model="m", input="hi", tools=[TOOL, {"type": kind}])
    assert (error.param, error.code) == ("tools[1].type", "unsupported_tool")
    assert "hosted tools are not allowed through the gateway" in error.message


def literal_types(union: Any) -> set[str]:
    """The `type` values of the SDK's TypedDicts in a union."""
    found: set[str] = set()
    for member in typing.get_args(union):
        if not typing_extensions.is_typeddict(member):
            continue  # e.g. tool_choice's plain strings
        kind = typing.get_type_hints(member).get("type")
        while kind is not None and typing.get_origin(kind) is not typing.Literal:
            kind = typing.get_args(kind)[0]
        found |= set(typing.get_args(kind)) if kind is not None else set()
    return found


def test_it_decides_about_every_field_of_the_sdks_request() -> None:
    assert ResponseCreateParamsStreaming.__required_keys__ | ResponseCreateParamsStreaming.__optional_keys__ == KNOWN_FIELDS


def test_it_refuses_every_tool_type_of_the_sdk_but_function() -> None:
    assert literal_types(ToolParam) - {"function"} <= BUILTIN_TOOLS


@pytest.mark.parametrize("kind", sorted(literal_types(ToolChoice) - {"function", "allowed_tools"}))
def test_it_refuses_every_built_in_tool_choice_of_the_sdk(kind: str) -> None:
    error = refusal(model="m", input="hi", tools=[TOOL], tool_choice={"type": kind, "name": "lookup", "server_label": "x"})
    assert (error.param, error.code) == ("tool_choice.type", "unsupported_tool")


@pytest.mark.parametrize(
    "kind", sorted(literal_types(ResponseInputItemParam) - {"message", "function_call", "function_call_output", "reasoning"})
)
def test_it_refuses_every_other_input_item_type_of_the_sdk(kind: str) -> None:
    error = refusal(model="m", input=[user(), {"type": kind, "id": "x", "call_id": "c"}])
    expected = ("input[1].id", "stateless_gateway") if kind == "item_reference" else ("input[1].type", "unsupported_input_item")
    assert (error.param, error.code) == expected


def test_it_tells_a_stateful_client_to_send_the_full_input() -> None:
    error = refusal(model="m", input="hi", previous_response_id="resp_1")
    assert "keeps no conversation state" in error.message and "full conversation" in error.message


# ── request: never anything but a 400 or a valid chat body ─────────────────────────────


WORDS = [
    "", "function", "message", "user", "assistant", "system", "developer", "auto", "required", "none", "input_text",
    "input_image", "input_file", "output_text", "refusal", "function_call", "function_call_output", "reasoning",
    "item_reference", "json_schema", "json_object", "text", "low", "high", "web_search", "allowed_tools", "x" * 70,
]  # fmt: skip
KEYS = [
    "type", "role", "content", "text", "name", "arguments", "call_id", "output", "image_url", "file_data", "file_id",
    "detail", "id", "parameters", "strict", "description", "format", "schema", "effort", "mode", "tools", "prewarm",
]  # fmt: skip


def junk(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, 1, -1, 7, 2**70, 3, 16])
    if kind == 3:
        return rng.choice([0.5, -2.5, 1e308, math.nan, math.inf, 2.0])
    if kind in (4, 5):
        return rng.choice(WORDS)
    if kind == 6:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(KEYS): junk(rng, depth + 1) for _ in range(rng.randrange(4))}


def valid_body() -> dict[str, Any]:
    return {
        "model": "m",
        "instructions": "Be brief.",
        "input": [
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}, {"type": "input_image", "image_url": "https://x/a.png"}],
            },
            {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
            {"type": "function_call", "call_id": "c", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "done"},
        ],
        "tools": [dict(TOOL)],
        "tool_choice": {"type": "function", "name": "lookup"},
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {}}},
        "reasoning": {"effort": "low"},
        "metadata": {"a": "b"},
        "temperature": 1,
        "max_output_tokens": 10,
    }


def mutate(rng: random.Random, body: dict[str, Any]) -> None:
    """Put a random JSON value somewhere in the body: a top-level field or a nested one."""
    targets: list[tuple[Any, Any]] = [(body, rng.choice(sorted(KNOWN_FIELDS | {"bogus"})))]
    for item in items if isinstance(items := body.get("input"), list) else []:
        if isinstance(item, dict):
            targets.append((item, rng.choice(KEYS)))
            for part in parts if isinstance(parts := item.get("content"), list) else []:
                if isinstance(part, dict):
                    targets.append((part, rng.choice(KEYS)))
    for name in ("tools", "tool_choice", "text", "reasoning"):
        value = body.get(name)
        for entry in value if isinstance(value, list) else [value]:
            if isinstance(entry, dict):
                targets.append((entry, rng.choice(KEYS)))
    target, key = rng.choice(targets)
    target[key] = junk(rng)


def test_no_json_value_gets_anything_but_a_400_or_a_valid_chat_body() -> None:
    rng = random.Random(20261202)
    accepted = refused = 0
    for _ in range(2000):
        body = valid_body()
        for _ in range(rng.randrange(1, 4)):
            mutate(rng, body)
        try:
            chat = WIRE.to_chat(json.loads(json.dumps(body)))
        except GatewayError as exc:
            refused += 1
            assert exc.status == 400 and isinstance(exc.param, str) and exc.message
            continue
        accepted += 1
        assert validate_chat(chat) == body["model"]
        json.dumps(chat, allow_nan=True)
        # An accepted request is echoed in a valid Response too.
        Response.model_validate(WIRE.from_chat(completion(), request=body))
    assert accepted > 200 and refused > 200  # both sides of the border were explored


CHAT_KEYS = [
    "choices", "message", "delta", "content", "refusal", "tool_calls", "function", "name", "arguments", "id", "index",
    "finish_reason", "usage", "prompt_tokens", "completion_tokens", "total_tokens", "service_tier", "created",
]  # fmt: skip


def shake(rng: random.Random, value: Any) -> None:
    """Put a random JSON value at one random place inside `value` (a canonical answer or chunk)."""
    places: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            places.append((node, rng.choice([*node, *CHAT_KEYS])))
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            places.extend((node, index) for index in range(len(node)))
            for child in node:
                walk(child)

    walk(value)
    target, key = rng.choice(places)
    target[key] = junk(rng)


def test_no_canonical_answer_or_chunk_breaks_the_response_shape() -> None:
    """Adapters are trusted, but a malformed answer must still become a valid Response, not a 500."""
    rng = random.Random(7)
    calls = [call("call_1", "lookup", "{}")]
    for _ in range(150):
        answer = completion("Hi", tool_calls=calls, refusal_text="No.")
        shake(rng, answer)
        Response.model_validate(WIRE.from_chat(answer, request={"model": "m", "input": "hi"}))
        chunks = [
            delta({"role": "assistant", "content": "Hi"}),
            delta({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "lookup", "arguments": "{}"}}]}),
            delta({"refusal": "No."}, "stop"),
            usage_chunk(),
        ]
        shake(rng, rng.choice(chunks))
        accumulate(parse(encode(chunks)))


# ── answers ────────────────────────────────────────────────────────────────────────────


def test_it_answers_with_a_response_the_sdk_validates() -> None:
    request = {
        "model": "claims-model",
        "input": "hi",
        "instructions": "Be brief.",
        "tools": [TOOL],
        "tool_choice": "auto",
        "temperature": 0.3,
        "top_p": 0.8,
        "max_output_tokens": 99,
        "metadata": {"ticket": "T-1"},
        "text": {"format": {"type": "json_schema", "name": "claim", "schema": {"type": "object"}, "strict": True}},
        "reasoning": {"effort": "low"},
        "store": True,
    }
    answer = WIRE.from_chat(
        completion(
            usage={
                "prompt_tokens": 20,
                "completion_tokens": 7,
                "total_tokens": 27,
                "prompt_tokens_details": {"cached_tokens": 8},
                "completion_tokens_details": {"reasoning_tokens": 3},
            }
        ),
        request=request,
    )
    response = Response.model_validate(answer)
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.error is None and response.incomplete_details is None
    assert response.output_text == "Hello there."
    [message] = response.output
    assert message.type == "message" and message.id.startswith("msg_") and message.status == "completed"
    assert response.usage is not None
    assert response.usage.model_dump() == {
        "input_tokens": 20,
        "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0, "cache_write_tokens_details": None},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 27,
    }
    assert response.instructions == "Be brief." and response.metadata == {"ticket": "T-1"}
    assert response.tool_choice == "auto" and response.parallel_tool_calls is True
    assert (response.temperature, response.top_p, response.max_output_tokens) == (0.3, 0.8, 99)
    [tool] = response.tools
    assert isinstance(tool, FunctionTool)
    assert (tool.type, tool.name, tool.parameters) == ("function", "lookup", TOOL["parameters"])
    assert response.text is not None and response.text.format is not None and response.text.format.type == "json_schema"
    assert response.reasoning is not None and response.reasoning.effort == "low"
    assert answer["store"] is False and response.previous_response_id is None
    assert response.model == "claims-model" and response.created_at == 1_700_000_000


def test_it_answers_tool_calls_as_function_call_items() -> None:
    calls = [call("call_1", "lookup", '{"id": 1}'), call("call_2", "ping", "{}")]
    response = Response.model_validate(
        WIRE.from_chat(
            completion(None, tool_calls=calls, finish_reason="tool_calls"), request={"model": "m", "input": "hi", "tools": [TOOL]}
        )
    )
    assert [item.type for item in response.output] == ["function_call", "function_call"]
    first = response.output[0]
    assert first.type == "function_call"
    assert (first.call_id, first.name, first.arguments, first.status) == ("call_1", "lookup", '{"id": 1}', "completed")
    assert first.id is not None and first.id.startswith("fc_")
    assert response.output_text == ""


def test_it_answers_text_before_the_calls_and_a_refusal_as_its_own_part() -> None:
    response = Response.model_validate(
        WIRE.from_chat(
            completion("Checking.", refusal_text="Not that one.", tool_calls=[call("c", "lookup", "{}")]),
            request={"model": "m", "input": "hi"},
        )
    )
    message, function_call = response.output
    assert message.type == "message" and function_call.type == "function_call"
    assert [part.type for part in message.content] == ["output_text", "refusal"]
    assert message.content[1].type == "refusal" and message.content[1].refusal == "Not that one."


@pytest.mark.parametrize(("finish_reason", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")])
def test_it_answers_a_cut_short_answer_as_incomplete(finish_reason: str, reason: str) -> None:
    response = Response.model_validate(
        WIRE.from_chat(completion("Half", finish_reason=finish_reason), request={"model": "m", "input": "hi"})
    )
    assert response.status == "incomplete" and response.completed_at is None
    assert response.incomplete_details is not None and response.incomplete_details.reason == reason
    assert isinstance(response.output[0], ResponseOutputMessage) and response.output[0].status == "incomplete"


def test_it_answers_without_usage_when_the_backend_gave_none() -> None:
    answer = completion()
    del answer["usage"]
    assert Response.model_validate(WIRE.from_chat(answer, request={"model": "m", "input": "hi"})).usage is None


def test_the_sdk_reads_the_answer() -> None:
    client = sdk(lambda body: httpx2.Response(200, json=WIRE.from_chat(completion("Claim 7 is open."), request=body)))
    response = client.responses.create(model="claims-model", input="Status of claim 7?", metadata={"ticket": "T-1"})
    assert response.output_text == "Claim 7 is open."
    assert response.metadata == {"ticket": "T-1"}


def test_it_answers_errors_in_openais_shape() -> None:
    exc = rate_limited("Too many requests for this key.", kind=BreachKind.RPM, retry_after=3)
    answer = WIRE.error_response(exc, request_id="req_abc")
    assert answer.status_code == 429
    assert answer["retry-after"] == "3" and answer["x-request-id"] == "req_abc"
    assert json.loads(answer.content) == exc.body()

    client = sdk(lambda body: httpx2.Response(400, json=refusal(**body).body()))
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="m", input="hi", previous_response_id="resp_1")
    assert caught.value.code == "stateless_gateway" and caught.value.param == "previous_response_id"


# ── streams ────────────────────────────────────────────────────────────────────────────


def test_it_streams_text() -> None:
    frames = encode(
        [
            delta({"role": "assistant", "content": ""}),
            delta({"content": "Claim 7 "}),
            delta({}),
            delta({"content": "is open."}),
            delta({}, "stop"),
            usage_chunk(11, 5),
        ]
    )
    events = parse(frames)
    assert kinds(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = events[0].response
    assert created.status == "in_progress" and created.output == [] and created.usage is None
    added = events[2]
    assert added.item.type == "message" and added.item.status == "in_progress" and added.output_index == 0
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["Claim 7 ", "is open."]
    assert {e.item_id for e in events[3:8]} == {added.item.id} and events[8].item.id == added.item.id
    assert events[6].text == "Claim 7 is open."
    assert events[8].item.status == "completed"
    final = events[-1].response
    assert final.id == created.id and final.status == "completed"
    assert final.output_text == "Claim 7 is open."
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (
        11,
        5,
        16,
    )
    assert accumulate(events).output_text == "Claim 7 is open."


def test_it_streams_several_tool_calls_whose_arguments_end_late() -> None:
    # As output DLP releases them: each call's held-back tail arrives in the last chunk.
    frames = encode(
        [
            delta({"role": "assistant", "content": None}),
            delta(
                {
                    "tool_calls": [
                        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "lookup", "arguments": ""}}
                    ]
                }
            ),
            delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"id"'}}]}),
            delta(
                {"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "ping", "arguments": "{"}}]}
            ),
            delta(
                {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}, {"index": 1, "function": {"arguments": "}"}}]},
                "tool_calls",
            ),
            usage_chunk(),
        ],
        request={"model": "m", "input": "hi", "tools": [TOOL, {"type": "function", "name": "ping"}]},
    )
    events = parse(frames)
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [(e.output_index, e.item.type, e.item.call_id, e.item.name, e.item.arguments) for e in added] == [
        (0, "function_call", "call_a", "lookup", ""),
        (1, "function_call", "call_b", "ping", ""),
    ]
    deltas = [(e.output_index, e.delta) for e in events if e.type == "response.function_call_arguments.delta"]
    assert deltas == [(0, '{"id"'), (1, "{"), (0, ": 1}"), (1, "}")]
    done = [(e.output_index, e.arguments) for e in events if e.type == "response.function_call_arguments.done"]
    assert done == [(0, '{"id": 1}'), (1, "{}")]
    final = events[-1].response
    assert [(item.call_id, item.arguments, item.status) for item in final.output] == [
        ("call_a", '{"id": 1}', "completed"),
        ("call_b", "{}", "completed"),
    ]
    assert not any(item.type == "message" for item in final.output)
    assembled = accumulate(events)
    assert [(item.call_id, item.arguments) for item in assembled.output] == [("call_a", '{"id": 1}'), ("call_b", "{}")]


def test_it_streams_text_and_tool_calls_interleaved() -> None:
    frames = encode(
        [
            delta({"role": "assistant", "content": "Let me "}),
            delta(
                {
                    "tool_calls": [
                        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
                    ]
                }
            ),
            delta({"content": "check.", "tool_calls": [{"index": 0, "function": {"arguments": ""}}]}, "tool_calls"),
        ]
    )
    events = parse(frames)
    final = events[-1].response
    assert [item.type for item in final.output] == ["message", "function_call"]
    assert final.output_text == "Let me check."
    assert final.usage is None
    assembled = accumulate(events)
    assert assembled.output_text == "Let me check." and assembled.output[1].arguments == "{}"


def test_it_opens_a_tool_call_once_its_id_and_name_are_known() -> None:
    frames = encode(
        [
            delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
            delta({"tool_calls": [{"index": 0, "id": "call_late", "function": {"name": "lookup"}}]}),
            delta({"tool_calls": [{"index": 0, "function": {"arguments": ": 2}"}}]}),
            # A call whose id the backend never sent still gets an item, with an id of its own.
            delta({"tool_calls": [{"index": 1, "function": {"name": "ping", "arguments": "{}"}}]}, "tool_calls"),
        ]
    )
    events = parse(frames)
    first_added = next(e for e in events if e.type == "response.output_item.added")
    assert (first_added.item.call_id, first_added.item.name) == ("call_late", "lookup")
    final = events[-1].response
    assert [item.arguments for item in final.output] == ['{"a": 2}', "{}"]
    assert final.output[1].call_id.startswith("call_") and final.output[1].name == "ping"
    assert accumulate(events).output[0].arguments == '{"a": 2}'


def test_it_streams_a_refusal() -> None:
    events = parse(encode([delta({"role": "assistant", "refusal": "I can't "}), delta({"refusal": "help with that."}, "stop")]))
    assert "response.refusal.delta" in kinds(events) and "response.refusal.done" in kinds(events)
    message = events[-1].response.output[0]
    assert message.content[0].type == "refusal" and message.content[0].refusal == "I can't help with that."
    assert accumulate(events).output[0].content[0].refusal == "I can't help with that."


def test_it_ends_a_stream_cut_short_as_incomplete() -> None:
    events = parse(encode([delta({"content": "Half an ans"}, "length"), usage_chunk(3, 4)]))
    final = events[-1]
    assert final.type == "response.incomplete"
    assert final.response.status == "incomplete"
    assert final.response.incomplete_details.reason == "max_output_tokens"
    assert final.response.output[0].status == "incomplete"
    assert final.response.usage.output_tokens == 4


def test_it_ends_an_empty_stream_with_an_empty_response() -> None:
    events = parse(encode([]))
    assert kinds(events) == ["response.created", "response.in_progress", "response.completed"]
    assert events[-1].response.output == []


def test_it_ignores_other_choices_and_empty_deltas() -> None:
    events = parse(
        encode(
            [delta({"content": "one"}), delta({"content": "two"}, index=1), {"choices": [None, {"index": 0}]}, delta({}, "stop")]
        )
    )
    assert events[-1].response.output_text == "one"


def test_it_stops_a_stream_with_an_error_event() -> None:
    exc = GatewayError(
        status=422,
        message="The answer was withheld.",
        type="invalid_request_error",
        code="dlp_response_blocked",
        decision=Decision.BLOCKED_DLP,
    )
    events = parse(encode([delta({"content": "Part"})], end=exc))
    assert kinds(events)[-1] == "error"
    error = events[-1]
    assert (error.code, error.message, error.param) == ("dlp_response_blocked", "The answer was withheld.", None)
    assert not any(kind.startswith("response.completed") for kind in kinds(events))


def test_an_error_before_any_chunk_still_opens_the_response() -> None:
    exc = GatewayError(
        status=502, message="Upstream failed.", type="api_error", code="upstream_error", decision=Decision.UPSTREAM_ERROR
    )
    assert kinds(parse(encode([], end=exc))) == ["response.created", "response.in_progress", "error"]


def test_the_sdk_reads_the_stream() -> None:
    chunks = [
        delta({"role": "assistant", "content": "Claim 7 "}),
        delta({"content": "is open."}),
        delta(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"id": 7}'}}
                ]
            },
            "tool_calls",
        ),
        usage_chunk(),
    ]
    client = sdk(lambda body: sse_response(encode(chunks, request=body)))
    with client.responses.stream(
        model="claims-model", input="Status of claim 7?", tools=[TOOL]  # type: ignore[list-item]  # the SDK's FunctionToolParam requires `strict`; the API does not
    ) as stream:
        seen = [event.type for event in stream]
        final = stream.get_final_response()
    assert seen[0] == "response.created" and seen[-1] == "response.completed"
    assert final.output_text == "Claim 7 is open."
    assert final.output[1].type == "function_call" and final.output[1].arguments == '{"id": 7}'
    assert final.usage is not None and final.usage.total_tokens == 16

    raw = list(client.responses.create(model="claims-model", input="hi", stream=True))
    assert [type(event) for event in raw] == [EVENT_CLASSES[event.type] for event in raw]


def test_the_sdk_raises_when_the_gateway_stops_a_stream() -> None:
    exc = GatewayError(
        status=422,
        message="The answer was withheld.",
        type="invalid_request_error",
        code="dlp_response_blocked",
        decision=Decision.BLOCKED_DLP,
    )
    client = sdk(lambda body: sse_response(encode([delta({"content": "Part"})], request=body, end=exc)))
    with pytest.raises(openai.APIError) as caught:
        for _ in client.responses.create(model="claims-model", input="hi", stream=True):
            pass
    assert caught.value.message == "The answer was withheld."
    assert caught.value.code == "dlp_response_blocked"
