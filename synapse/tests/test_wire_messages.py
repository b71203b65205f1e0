"""The Messages wire: Anthropic requests in, canonical chat out, and back; every answer, event and
error checked against the official SDK's own models, accumulator and exception classes.

The SDK runs offline: its HTTP client gets a transport that hands each request to the wire and a
scripted canonical answer (what a provider adapter would return), so what the SDK sends is what
the wire reads and what the wire writes is what the SDK parses.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx2
import pydantic
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import (
    Message,
    MessageTokensCount,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    TextBlock,
    ToolParam,
    ToolUseBlock,
)
from anthropic.types.shared import ErrorResponse

from audit.models import Decision
from routing.adapters.openai_shapes import ChunkWriter, completion, tool_call, usage
from synapse import errors
from synapse.errors import GatewayError
from synapse.schemas import validate_chat
from synapse.wire.messages import (
    MessagesStreamEncoder,
    MessagesWire,
    count_tokens_response,
    error_body,
    to_chat_for_count,
)
from teams.limits import BreachKind

WIRE = MessagesWire()
EVENTS = pydantic.TypeAdapter(RawMessageStreamEvent)
EVENT_CLASSES = {
    "message_start": RawMessageStartEvent,
    "message_delta": RawMessageDeltaEvent,
    "message_stop": RawMessageStopEvent,
    "content_block_start": RawContentBlockStartEvent,
    "content_block_delta": RawContentBlockDeltaEvent,
    "content_block_stop": RawContentBlockStopEvent,
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_FUNCTION = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": WEATHER["input_schema"],
        "description": "Current weather for a city",
    },
}


def request(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-gw", "max_tokens": 256, "messages": [{"role": "user", "content": "Hi"}], **fields}


def chat(body: dict[str, Any]) -> dict[str, Any]:
    """to_chat, and the result must be a chat body the pipeline accepts."""
    result = WIRE.to_chat(body)
    assert validate_chat(result) == result["model"]
    return result


def refusal(body: Any, translate: Callable[[Any], Any] = WIRE.to_chat) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        translate(body)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    return caught.value


def tool_turns(result: Any) -> list[dict[str, Any]]:
    """An assistant tool_use turn and the user turn answering it."""
    return [
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
        },
        {"role": "user", "content": result},
    ]


# ── to_chat: the body ───────────────────────────────────────────────────────────────────


def test_it_translates_a_minimal_request() -> None:
    assert chat(request()) == {"model": "claude-gw", "max_tokens": 256, "messages": [{"role": "user", "content": "Hi"}]}


def test_it_maps_the_sampling_and_metadata_fields() -> None:
    body = request(
        stop_sequences=["\n\nHuman:", "END"],
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        stream=True,
        metadata={"user_id": "u-17"},
    )
    result = chat(body)
    assert result["stop"] == ["\n\nHuman:", "END"]
    assert result["temperature"] == 0.3 and result["top_p"] == 0.9
    assert result["stream"] is True and result["user"] == "u-17"
    assert "top_k" not in result  # dropped: chat has no top_k, OpenAI backends refuse unknown parameters
    assert "stream" not in chat(request(stream=False))


def test_it_puts_the_system_prompt_first_as_one_message() -> None:
    blocks = [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    result = chat(request(system=blocks, messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Salut"}]))
    assert result["messages"] == [
        {"role": "system", "content": "You are terse.\nAnswer in French."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Salut"},
    ]
    assert chat(request(system="Be brief."))["messages"][0] == {"role": "system", "content": "Be brief."}
    assert chat(request(system=""))["messages"] == [{"role": "user", "content": "Hi"}]


def test_it_keeps_system_messages_where_the_client_put_them() -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "system", "content": [{"type": "text", "text": "Now be formal."}]}]
    assert chat(request(messages=messages))["messages"][1] == {"role": "system", "content": "Now be formal."}


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"max_tokens": None}, "max_tokens", "missing_required_parameter"),
        ({"max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"max_tokens": True}, "max_tokens", "invalid_value"),
        ({"max_tokens": 1.5}, "max_tokens", "invalid_value"),
        ({"model": None}, "model", "missing_required_parameter"),
        ({"model": " "}, "model", "invalid_type"),
        ({"messages": []}, "messages", "invalid_value"),
        ({"messages": "Hi"}, "messages", "invalid_value"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
        ({"messages": [{"role": "user", "content": "x", "name": "bob"}]}, "messages[0].name", "unknown_parameter"),
        ({"messages": [{"role": "user", "content": []}]}, "messages[0].content", "invalid_value"),
        ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content", "invalid_type"),
        ({"system": 7}, "system", "invalid_type"),
        ({"system": [{"type": "image", "source": {}}]}, "system[0].type", "invalid_value"),
        ({"temperature": 1.5}, "temperature", "invalid_value"),
        ({"temperature": "0.5"}, "temperature", "invalid_value"),
        ({"top_p": -0.1}, "top_p", "invalid_value"),
        ({"top_k": 0}, "top_k", "invalid_value"),
        ({"stream": "yes"}, "stream", "invalid_type"),
        ({"stop_sequences": "END"}, "stop_sequences", "invalid_value"),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences", "invalid_value"),
        ({"metadata": {"user_id": "u", "team": "x"}}, "metadata.team", "unknown_parameter"),
        ({"metadata": {"user_id": 5}}, "metadata.user_id", "invalid_type"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens", "missing_required_parameter"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type", "invalid_value"),
        ({"service_tier": "priority"}, "service_tier", "invalid_value"),
        ({"output_config": {"format": {"type": "regex", "schema": {}}}}, "output_config.format.type", "invalid_value"),
        ({"frequency_penalty": 0.5}, "frequency_penalty", "unknown_parameter"),
        ({"betas": ["x"]}, "betas", "unknown_parameter"),
    ],
)
def test_it_rejects_a_malformed_field_naming_it(fields: dict[str, Any], param: str, code: str) -> None:
    body = {key: value for key, value in request(**fields).items() if value is not None}
    error = refusal(body)
    assert (error.param, error.code) == (param, code)
    assert param in error.message


def test_it_says_max_tokens_is_required_as_anthropic_does() -> None:
    body = request()
    del body["max_tokens"]
    assert refusal(body).message == "'max_tokens' is required."


@pytest.mark.parametrize(
    "field", ["container", "mcp_servers", "context_management", "inference_geo", "user_profile_id", "workspace_id"]
)
def test_it_refuses_fields_that_need_state_or_placement_the_gateway_owns(field: str) -> None:
    error = refusal(request(**{field: "x"}))
    assert (error.param, error.code) == (field, "unsupported_parameter")
    assert "gateway" in error.message


def test_mcp_servers_are_refused_because_the_gateway_governs_mcp() -> None:
    body = request(mcp_servers=[{"type": "url", "url": "https://mcp.example.com/sse", "name": "x"}])
    assert "governs MCP itself" in refusal(body).message


def test_it_drops_hints_that_do_not_change_the_answer() -> None:
    body = request(
        thinking={"type": "enabled", "budget_tokens": 2048, "display": "summarized"},
        output_config={"effort": "high"},
        cache_control={"type": "ephemeral"},
        service_tier="standard_only",
        speed="fast",
        diagnostics={"previous_message_id": "msg_1"},
    )
    assert chat(body) == chat(request())


def test_it_maps_a_json_schema_output_format() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    result = chat(request(output_config={"format": {"type": "json_schema", "schema": schema}}))
    assert result["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


# ── to_chat: tools ──────────────────────────────────────────────────────────────────────


def test_it_maps_client_tools_to_functions() -> None:
    tools = [
        {**WEATHER, "cache_control": {"type": "ephemeral"}, "input_examples": [{"city": "Oslo"}]},
        {"type": "custom", "name": "noop", "input_schema": {"type": "object"}, "strict": True},
    ]
    result = chat(request(tools=tools))
    assert result["tools"] == [
        WEATHER_FUNCTION,
        {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}, "strict": True}},
    ]
    assert "tool_choice" not in result


@pytest.mark.parametrize(
    "tool_type",
    [
        "web_search_20250305",
        "web_search_20260318",
        "web_fetch_20250910",
        "bash_20250124",
        "text_editor_20250728",
        "computer_20250124",
        "code_execution_20250825",
        "memory_20250818",
        "tool_search_tool_regex_20251119",
        "browser_toolset_20260801",
    ],
)
def test_it_refuses_built_in_server_tools(tool_type: str) -> None:
    error = refusal(request(tools=[WEATHER, {"type": tool_type, "name": "x"}]))
    assert (error.param, error.code) == ("tools[1].type", "unsupported_tool")
    assert tool_type in error.message and "built-in server tools are not allowed" in error.message


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        ({"name": "f"}, "tools[0].input_schema"),
        ({"name": "", "input_schema": {}}, "tools[0].name"),
        ({"name": "f", "input_schema": "{}"}, "tools[0].input_schema"),
        ({"name": "f", "input_schema": {}, "parameters": {}}, "tools[0].parameters"),
        ({"name": "f", "input_schema": {}, "description": 3}, "tools[0].description"),
        ("get_weather", "tools[0]"),
    ],
)
def test_it_rejects_a_malformed_tool(tool: Any, param: str) -> None:
    assert refusal(request(tools=[tool])).param == param


@pytest.mark.parametrize(
    ("choice", "mapped", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}, None),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
        ({"type": "any", "disable_parallel_tool_use": False}, "required", None),
    ],
)
def test_it_maps_tool_choice(choice: dict[str, Any], mapped: Any, parallel: bool | None) -> None:
    result = chat(request(tools=[WEATHER], tool_choice=choice))
    assert result["tool_choice"] == mapped
    assert result.get("parallel_tool_calls") == parallel


def test_tool_choice_without_tools() -> None:
    assert "tool_choice" not in chat(request(tool_choice={"type": "auto"}))
    assert refusal(request(tool_choice={"type": "any"})).param == "tool_choice"
    assert refusal(request(tools=[WEATHER], tool_choice={"type": "tool", "name": "other"})).param == "tool_choice.name"
    assert refusal(request(tools=[WEATHER], tool_choice={"type": "none", "name": "x"})).param == "tool_choice.name"
    assert refusal(request(tools=[WEATHER], tool_choice="auto")).param == "tool_choice"


# ── to_chat: content blocks ─────────────────────────────────────────────────────────────


def test_it_maps_text_and_image_blocks() -> None:
    content = [
        {"type": "text", "text": "What is in these?", "cache_control": {"type": "ephemeral"}, "citations": None},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    assert chat(request(messages=[{"role": "user", "content": content}]))["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("source", "param", "code"),
    [
        ({"type": "base64", "media_type": "image/bmp", "data": PNG}, "messages[0].content[1].source.media_type", "invalid_value"),
        ({"type": "base64", "media_type": "image/png"}, "messages[0].content[1].source.data", "missing_required_parameter"),
        ({"type": "url", "url": "file:///etc/passwd"}, "messages[0].content[1].source.url", "invalid_value"),
        ({"type": "file", "file_id": "file_1"}, "messages[0].content[1].source.type", "unsupported_content"),
        (
            {"type": "base64", "media_type": "image/png", "data": PNG, "x": 1},
            "messages[0].content[1].source.x",
            "unknown_parameter",
        ),
        ("https://example.com/cat.jpg", "messages[0].content[1].source", "invalid_type"),
    ],
)
def test_it_rejects_a_bad_image_naming_the_field(source: Any, param: str, code: str) -> None:
    content = [{"type": "text", "text": "Look"}, {"type": "image", "source": source}]
    error = refusal(request(messages=[{"role": "user", "content": content}]))
    assert (error.param, error.code) == (param, code)


def test_it_maps_documents_it_can_carry() -> None:
    content = [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            "title": "q3.pdf",
        },
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Plain notes."}, "context": "x"},
    ]
    assert chat(request(messages=[{"role": "user", "content": content}]))["messages"][0]["content"] == [
        {"type": "file", "file": {"filename": "q3.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
        {"type": "text", "text": "Plain notes."},
    ]
    url_document = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    error = refusal(request(messages=[{"role": "user", "content": [url_document]}]))
    assert (error.param, error.code) == ("messages[0].content[0].source.type", "unsupported_content")


@pytest.mark.parametrize(
    "block",
    [
        {"type": "search_result", "source": "https://x", "title": "t", "content": []},
        {"type": "container_upload", "file_id": "file_1"},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "video", "source": {}},
    ],
)
def test_it_refuses_blocks_it_cannot_carry_in_a_user_turn(block: dict[str, Any]) -> None:
    error = refusal(request(messages=[{"role": "user", "content": [{"type": "text", "text": "x"}, block]}]))
    assert (error.param, error.code) == ("messages[0].content[1].type", "unsupported_content")
    assert block["type"] in error.message


@pytest.mark.parametrize("kind", ["image", "document", "tool_result", "search_result", "web_fetch_tool_result"])
def test_it_refuses_blocks_it_cannot_carry_in_an_assistant_turn(kind: str) -> None:
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": [{"type": kind}]}]
    error = refusal(request(messages=messages))
    assert (error.param, error.code) == ("messages[1].content[0].type", "unsupported_content")


def test_it_maps_tool_use_and_tool_results_in_chat_order() -> None:
    results = [
        {"type": "text", "text": "Also, which is warmer?"},
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C sunny", "cache_control": {"type": "ephemeral"}},
        {
            "type": "tool_result",
            "tool_use_id": "toolu_2",
            "content": [{"type": "text", "text": "4C"}, {"type": "text", "text": "snow"}],
        },
    ]
    assert chat(request(messages=tool_turns(results), tools=[WEATHER]))["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "4C\nsnow"},
        {"role": "user", "content": [{"type": "text", "text": "Also, which is warmer?"}]},
    ]


def test_an_assistant_turn_of_only_tool_calls_has_null_content() -> None:
    turns = tool_turns([{"type": "tool_result", "tool_use_id": "toolu_1"}, {"type": "tool_result", "tool_use_id": "toolu_2"}])
    turns[1]["content"] = turns[1]["content"][1:]
    result = chat(request(messages=turns))["messages"]
    assert result[1]["content"] is None and len(result[1]["tool_calls"]) == 2
    assert result[2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": ""},
        {"role": "tool", "tool_call_id": "toolu_2", "content": ""},
    ]


def test_a_failed_tool_result_says_so() -> None:
    results = [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "city not found", "is_error": True},
        {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True},
    ]
    tools = chat(request(messages=tool_turns(results)))["messages"][2:]
    assert [message["content"] for message in tools] == ["Error: city not found", "Error"]
    bad = [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": "yes"}]
    assert refusal(request(messages=tool_turns(bad))).param == "messages[2].content[0].is_error"


def test_an_image_a_tool_returned_follows_the_tool_messages() -> None:
    screenshot = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    results = [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "Screenshot:"}, screenshot]},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "ok"},
        {"type": "text", "text": "Describe it."},
    ]
    assert chat(request(messages=tool_turns(results)))["messages"][2:] == [
        {
            "role": "tool",
            "tool_call_id": "toolu_1",
            "content": "Screenshot:\n(The tool returned 1 image(s); they are attached to the next user message.)",
        },
        {"role": "tool", "tool_call_id": "toolu_2", "content": "ok"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "text", "text": "Describe it."},
            ],
        },
    ]


def test_it_rejects_a_tool_result_that_answers_no_tool_call() -> None:
    stray = [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]
    error = refusal(request(messages=tool_turns(stray)))
    assert error.param == "messages[2].content[0].tool_use_id" and "toolu_9" in error.message
    # A text turn between the tool calls and their results breaks chat's order too.
    turns = tool_turns("not yet")
    turns.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]})
    assert refusal(request(messages=turns)).param == "messages[3].content[0].tool_use_id"
    first = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]}]
    assert refusal(request(messages=first)).param == "messages[0].content[0].tool_use_id"


def test_tool_results_may_span_consecutive_user_messages() -> None:
    turns = tool_turns([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a"}])
    turns.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "b"}]})
    assert [m["role"] for m in chat(request(messages=turns))["messages"]] == ["user", "assistant", "tool", "tool"]


@pytest.mark.parametrize(
    ("block", "param"),
    [
        ({"type": "tool_use", "name": "f", "input": {}}, "messages[1].content[0].id"),
        ({"type": "tool_use", "id": "t", "input": {}}, "messages[1].content[0].name"),
        ({"type": "tool_use", "id": "t", "name": "f", "input": "{}"}, "messages[1].content[0].input"),
        ({"type": "tool_use", "id": "t", "name": "f", "input": {"x": float("nan")}}, "messages[1].content[0].input"),
        ({"type": "text", "text": 5}, "messages[1].content[0].text"),
        ({"type": "text"}, "messages[1].content[0].text"),
        ({"text": "x"}, "messages[1].content[0].type"),
    ],
)
def test_it_rejects_a_malformed_assistant_block(block: dict[str, Any], param: str) -> None:
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": [block]}]
    assert refusal(request(messages=messages)).param == param


def test_it_drops_thinking_from_assistant_history() -> None:
    content = [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQB..."},
        {"type": "redacted_thinking", "data": "EmwK..."},
        {"type": "text", "text": "Sunny."},
    ]
    messages = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": content}]
    assert chat(request(messages=messages))["messages"][1] == {"role": "assistant", "content": "Sunny."}


def test_consecutive_assistant_messages_become_one_turn() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check. "},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}]},
        {"role": "user", "content": "Thanks"},
    ]
    result = chat(request(messages=messages))["messages"]
    assert [m["role"] for m in result] == ["user", "assistant", "tool", "user"]
    assert result[1]["content"] == "Let me check. " and result[1]["tool_calls"][0]["id"] == "toolu_1"


def test_a_prefilled_assistant_message_is_kept_last() -> None:
    messages = [{"role": "user", "content": "Pick A or B"}, {"role": "assistant", "content": "The answer is ("}]
    assert chat(request(messages=messages))["messages"][-1] == {"role": "assistant", "content": "The answer is ("}


# ── count_tokens ────────────────────────────────────────────────────────────────────────


def test_count_tokens_needs_no_max_tokens() -> None:
    body = {"model": "claude-gw", "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}], "tools": [WEATHER]}
    result = to_chat_for_count(body)
    assert validate_chat(result) == "claude-gw"
    assert "max_tokens" not in result and result["tools"] == [WEATHER_FUNCTION]
    assert result["messages"][0] == {"role": "system", "content": "Be brief."}
    for field, value in {"max_tokens": 5, "stream": True, "temperature": 0.5, "metadata": {}}.items():
        assert refusal({**body, field: value}, to_chat_for_count).param == field
    assert MessageTokensCount.model_validate(count_tokens_response(42)).input_tokens == 42


# ── from_chat ───────────────────────────────────────────────────────────────────────────


def answer(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "response_id": "chatcmpl-1",
        "model": "claude-gw",
        "text": "Hello!",
        "tool_calls": [],
        "finish_reason": "stop",
        "usage": usage(12, 3),
    }
    return completion(**{**base, **fields})


def message(completion_: dict[str, Any], body: dict[str, Any] | None = None) -> Message:
    result = WIRE.from_chat(completion_, request=body or request())
    parsed = Message.model_validate(result)
    assert parsed.model_dump(exclude_unset=True) == result  # nothing the SDK does not know
    return parsed


def test_it_answers_a_message() -> None:
    result = message(answer())
    assert result.id.startswith("msg_") and len(result.id) > 20
    assert (result.type, result.role, result.model) == ("message", "assistant", "claude-gw")
    assert [(block.type, getattr(block, "text", None)) for block in result.content] == [("text", "Hello!")]
    assert (result.stop_reason, result.stop_sequence) == ("end_turn", None)
    assert result.usage.model_dump(exclude_none=True) == {
        "input_tokens": 12,
        "output_tokens": 3,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert message(answer()).id != result.id


def test_cached_prompt_tokens_are_reported_as_cache_reads() -> None:
    result = message(answer(usage=usage(1000, 20, cached=800)))
    assert (result.usage.input_tokens, result.usage.cache_read_input_tokens, result.usage.output_tokens) == (200, 800, 20)


def test_it_answers_tool_calls_as_tool_use_blocks() -> None:
    calls = [tool_call("call_1", "get_weather", {"city": "Paris"}), tool_call("call_2", "get_weather", '{"city": "Oslo"}')]
    result = message(answer(text="", tool_calls=calls, finish_reason="tool_calls"))
    assert [block.model_dump(exclude_none=True) for block in result.content] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Oslo"}},
    ]
    assert result.stop_reason == "tool_use"
    # Text beside the calls comes first; a backend that ends tool calls with "stop" still reads tool_use.
    mixed = message(answer(text="Checking.", tool_calls=calls[:1], finish_reason="stop"))
    assert [block.type for block in mixed.content] == ["text", "tool_use"] and mixed.stop_reason == "tool_use"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("", {}),
        ("  ", {}),
        ('{"city": "Paris"', {"_raw_arguments": '{"city": "Paris"'}),
        ("[1, 2]", {"_raw_arguments": "[1, 2]"}),
        ('"Paris"', {"_raw_arguments": '"Paris"'}),
        (None, {}),
    ],
)
def test_tool_arguments_that_are_not_an_object_never_crash(arguments: Any, expected: dict[str, Any]) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    result = message(answer(text="", tool_calls=[call], finish_reason="tool_calls"))
    assert isinstance(result.content[0], ToolUseBlock) and result.content[0].input == expected


def test_a_tool_call_without_an_id_gets_one() -> None:
    call = {"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    block = message(answer(text="", tool_calls=[call])).content[0]
    assert isinstance(block, ToolUseBlock) and block.id.startswith("toolu_")


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal"), (None, "end_turn"), ("odd", "end_turn")],
)
def test_it_maps_finish_reasons(finish_reason: Any, stop_reason: str) -> None:
    assert message(answer(finish_reason=finish_reason)).stop_reason == stop_reason


def test_a_refusal_is_text_with_stop_reason_refusal() -> None:
    result = answer(text="")
    result["choices"][0]["message"]["refusal"] = "I can't help with that."
    parsed = message(result)
    assert isinstance(parsed.content[0], TextBlock) and parsed.content[0].text == "I can't help with that."
    assert parsed.stop_reason == "refusal"


def test_a_stop_sequence_named_by_the_backend_is_reported() -> None:
    result = answer()
    result["choices"][0]["stop_reason"] = "END"  # vLLM names the matched stop string
    parsed = message(result, request(stop_sequences=["END"]))
    assert (parsed.stop_reason, parsed.stop_sequence) == ("stop_sequence", "END")
    assert message(result, request()).stop_reason == "end_turn"


def test_an_empty_answer_has_no_content_blocks() -> None:
    result = message({"id": "x", "object": "chat.completion", "model": "claude-gw", "choices": []})
    assert result.content == [] and result.usage.input_tokens == 0 and result.stop_reason == "end_turn"


# ── the event stream ────────────────────────────────────────────────────────────────────


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in raw.decode().split("\n\n"):
        if not frame:
            continue
        lines = frame.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: ") and len(lines) == 2, frame
        name, data = lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])
        assert data["type"] == name
        events.append((name, data))
    return events


def encode(chunks: list[dict[str, Any]], *, body: dict[str, Any] | None = None, fail: GatewayError | None = None) -> bytes:
    encoder = WIRE.encoder(request=body or request(stream=True), model="claude-gw", request_id="req_1")
    out = b"".join(piece for chunk in chunks for piece in encoder.chunk(chunk))
    out += b"".join(encoder.error(fail) if fail else encoder.finish())
    return out


def validated(raw: bytes) -> list[Any]:
    """Every event through the SDK's own union; each must resolve to the class its name says."""
    parsed: list[Any] = []
    for name, data in parse_sse(raw):
        if name in ("ping", "error"):
            continue
        event = EVENTS.validate_python(data)
        assert type(event) is EVENT_CLASSES[name]
        parsed.append(event)
    return parsed


def accumulated(raw: bytes) -> Any:
    snapshot = None
    buffers: dict[int, bytes] = {}
    for event in validated(raw):
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
    return snapshot


def streamed(
    text_pieces: list[str], calls: list[tuple[str, str, list[str]]] | None = None, *, finish: str = "stop"
) -> list[dict[str, Any]]:
    """Canonical chunks as the provider adapters build them (routing.adapters.openai_shapes)."""
    writer = ChunkWriter(response_id="chatcmpl-1", model="claude-gw")
    chunks = [writer.text(piece) for piece in text_pieces]
    for index, (call_id, name, fragments) in enumerate(calls or []):
        chunks.append(writer.tool_call_start(index, call_id, name))
        chunks.extend(writer.tool_call_arguments(index, fragment) for fragment in fragments)
    chunks.append(writer.finish(finish))
    chunks.append(writer.usage(usage(9, 7, cached=4)))
    return chunks


def test_it_streams_text_as_anthropic_events() -> None:
    raw = encode(streamed(["Hel", "lo", "!"]))
    names = [name for name, _ in parse_sse(raw)]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    events = validated(raw)
    start = events[0].message
    assert start.id.startswith("msg_") and start.content == [] and start.stop_reason is None and start.model == "claude-gw"
    assert events[1].content_block.model_dump(exclude_none=True) == {"type": "text", "text": ""}
    delta = events[-2]
    assert (delta.delta.stop_reason, delta.delta.stop_sequence) == ("end_turn", None)
    assert delta.usage.model_dump(exclude_none=True) == {
        "input_tokens": 5,
        "output_tokens": 7,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4,
    }
    final = accumulated(raw)
    assert final.content[0].text == "Hello!" and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cache_read_input_tokens) == (5, 7, 4)


def test_it_streams_text_then_several_tool_calls() -> None:
    calls = [("call_1", "get_weather", ['{"ci', 'ty": "Paris"}']), ("call_2", "get_weather", ['{"city": "Oslo"}'])]
    raw = encode(streamed(["Checking."], calls, finish="tool_calls"))
    events = validated(raw)
    starts = [e for e in events if isinstance(e, RawContentBlockStartEvent)]
    stops = [e for e in events if isinstance(e, RawContentBlockStopEvent)]
    assert [(e.index, e.content_block.type) for e in starts] == [(0, "text"), (1, "tool_use"), (2, "tool_use")]
    assert [e.index for e in stops] == [0, 1, 2]
    # One block open at a time: each start comes after the previous block's stop.
    order = [
        (type(e).__name__, getattr(e, "index", None))
        for e in events
        if isinstance(e, RawContentBlockStartEvent | RawContentBlockStopEvent)
    ]
    assert order == [
        ("RawContentBlockStartEvent", 0),
        ("RawContentBlockStopEvent", 0),
        ("RawContentBlockStartEvent", 1),
        ("RawContentBlockStopEvent", 1),
        ("RawContentBlockStartEvent", 2),
        ("RawContentBlockStopEvent", 2),
    ]
    assert starts[1].content_block.model_dump(exclude_none=True) == {
        "type": "tool_use",
        "id": "call_1",
        "name": "get_weather",
        "input": {},
    }
    final = accumulated(raw)
    assert [block.type for block in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[1].input == {"city": "Paris"} and final.content[2].input == {"city": "Oslo"}
    assert final.stop_reason == "tool_use"


def test_text_after_a_tool_call_opens_a_new_block() -> None:
    writer = ChunkWriter(response_id="c", model="m")
    chunks = [writer.tool_call_start(0, "call_1", "f", '{"a":1}'), writer.text("done"), writer.finish("tool_calls")]
    final = accumulated(encode(chunks))
    assert [block.type for block in final.content] == ["tool_use", "text"]
    assert final.content[0].input == {"a": 1} and final.content[1].text == "done"


def test_empty_deltas_and_the_usage_only_chunk_emit_no_blocks() -> None:
    writer = ChunkWriter(response_id="c", model="m")
    chunks = [writer.delta({}), writer.delta({}), writer.finish("length"), writer.usage(usage(3, 0))]
    events = validated(encode(chunks))
    assert [type(e) for e in events] == [RawMessageStartEvent, RawMessageDeltaEvent, RawMessageStopEvent]
    assert events[1].delta.stop_reason == "max_tokens" and events[1].usage.input_tokens == 3


def test_a_stream_with_no_chunks_is_still_a_whole_message() -> None:
    final = accumulated(encode([]))
    assert final.content == [] and final.stop_reason == "end_turn" and final.usage.output_tokens == 0


def test_a_stream_without_usage_reports_zero_output_tokens() -> None:
    writer = ChunkWriter(response_id="c", model="m")
    events = validated(encode([writer.text("x"), writer.finish("stop")]))
    assert events[-2].usage.model_dump(exclude_none=True) == {"output_tokens": 0}


def test_interleaved_tool_arguments_land_on_their_own_block() -> None:
    writer = ChunkWriter(response_id="c", model="m")
    chunks = [
        writer.tool_call_start(0, "call_1", "f", '{"a":'),
        writer.tool_call_start(1, "call_2", "g", '{"b":2}'),
        writer.tool_call_arguments(0, "1}"),
        writer.finish("tool_calls"),
    ]
    final = accumulated(encode(chunks))
    assert [(block.name, block.input) for block in final.content] == [("f", {"a": 1}), ("g", {"b": 2})]


def test_a_streamed_refusal_and_a_matched_stop_sequence() -> None:
    writer = ChunkWriter(response_id="c", model="m")
    refused = accumulated(encode([writer.delta({"refusal": "I can't."}), writer.finish("stop")]))
    assert refused.content[0].text == "I can't." and refused.stop_reason == "refusal"
    writer = ChunkWriter(response_id="c", model="m")
    end = writer.finish("stop")
    end["choices"][0]["stop_reason"] = "END"
    events = validated(encode([writer.text("a"), end], body=request(stream=True, stop_sequences=["END"])))
    assert (events[-2].delta.stop_reason, events[-2].delta.stop_sequence) == ("stop_sequence", "END")


def test_an_error_ends_the_stream_with_anthropics_error_event() -> None:
    blocked = errors.dlp_response_blocked(("credit card",))
    raw = encode(streamed(["partial"])[:1], fail=blocked)
    events = parse_sse(raw)
    assert [name for name, _ in events] == ["message_start", "ping", "content_block_start", "content_block_delta", "error"]
    parsed = ErrorResponse.model_validate(events[-1][1])
    assert parsed.error.type == "invalid_request_error" and parsed.request_id == "req_1"
    assert parsed.error.message.endswith("(dlp_response_blocked)") and "credit card" in parsed.error.message


def test_nothing_follows_the_end_of_a_stream() -> None:
    encoder = WIRE.encoder(request=request(), model="m", request_id="r")
    assert list(encoder.finish())
    assert list(encoder.chunk(ChunkWriter(response_id="c", model="m").text("late"))) == []
    assert list(encoder.error(errors.internal_error())) == [] and list(encoder.finish()) == []
    failed = WIRE.encoder(request=request(), model="m", request_id="r")
    assert [name for name, _ in parse_sse(b"".join(failed.error(errors.internal_error())))] == ["error"]
    assert list(failed.finish()) == []


def test_the_encoder_is_a_fresh_stream_encoder_each_time() -> None:
    first, second = (WIRE.encoder(request=request(), model="m", request_id="r") for _ in range(2))
    assert isinstance(first, MessagesStreamEncoder) and first is not second


# ── errors ──────────────────────────────────────────────────────────────────────────────

ERRORS = [
    (errors.invalid_request("'max_tokens' is required.", param="max_tokens"), "invalid_request_error", anthropic.BadRequestError),
    (errors.authentication_failed(), "authentication_error", anthropic.AuthenticationError),
    (errors.budget_exceeded("The team's monthly budget is spent."), "billing_error", anthropic.PaymentRequiredError),
    (errors.model_not_allowed("gpt-x"), "permission_error", anthropic.PermissionDeniedError),
    (errors.not_found("/v1/nope"), "not_found_error", anthropic.NotFoundError),
    (errors.method_not_allowed("GET", "/v1/messages"), "invalid_request_error", anthropic.APIStatusError),
    (errors.payload_too_large(1024), "request_too_large", anthropic.ContentTooLargeError),
    (errors.dlp_response_blocked(("api key",)), "invalid_request_error", anthropic.UnprocessableEntityError),
    (errors.rate_limited("Too many requests", kind=BreachKind.RPM, retry_after=7), "rate_limit_error", anthropic.RateLimitError),
    (errors.internal_error(), "api_error", anthropic.InternalServerError),
    (errors.upstream_failed("Backend failed"), "api_error", anthropic.InternalServerError),
    (errors.limits_unavailable(), "overloaded_error", anthropic.ServiceUnavailableError),
    (
        errors.upstream_failed("Backend timed out", status=504, code="upstream_timeout"),
        "timeout_error",
        anthropic.GatewayTimeoutError,
    ),
]


@pytest.mark.parametrize(("exc", "error_type", "_"), ERRORS)
def test_errors_have_anthropics_shape(exc: GatewayError, error_type: str, _: type) -> None:
    response = WIRE.error_response(exc, request_id="req_42")
    assert response.status_code == exc.status
    assert response["request-id"] == "req_42" and response["x-request-id"] == "req_42"
    for name, value in exc.headers.items():
        assert response[name] == value
    body = json.loads(response.content)
    assert body == {
        "type": "error",
        "error": {"type": error_type, "message": f"{exc.message} ({exc.code})", "details": {"error_code": exc.code}},
        "request_id": "req_42",
    }
    if error_type != "request_too_large":  # documented for 413 by Anthropic, absent from the SDK's ErrorType union
        assert ErrorResponse.model_validate(body).error.type == error_type


def test_an_error_without_a_code_is_still_anthropic_shaped() -> None:
    exc = GatewayError(status=418, message="Odd.", type="x", code=None, decision=Decision.INVALID_REQUEST)
    assert error_body(exc) == {"type": "error", "error": {"type": "invalid_request_error", "message": "Odd."}}
    exc.status = 507
    assert error_body(exc)["error"]["type"] == "api_error"


# ── the official SDK, offline ───────────────────────────────────────────────────────────


class Upstream:
    """Stands where the pipeline and a provider would: records the canonical request the wire
    produced and answers with a scripted canonical completion or chunk stream."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.answer: dict[str, Any] = answer()
        self.chunks: list[dict[str, Any]] = streamed(["Hi"])
        self.refuse: GatewayError | None = None
        self.fail_stream: GatewayError | None = None

    def __call__(self, http_request: httpx2.Request) -> httpx2.Response:
        body = json.loads(http_request.content)
        try:
            if self.refuse is not None:
                raise self.refuse
            if http_request.url.path == "/v1/messages/count_tokens":
                self.seen.append(to_chat_for_count(body))
                return httpx2.Response(200, json=count_tokens_response(31))
            canonical = chat(body)
            self.seen.append(canonical)
        except GatewayError as exc:
            response = WIRE.error_response(exc, request_id="req_sdk")
            return httpx2.Response(response.status_code, headers=dict(response.items()), content=response.content)
        if canonical.get("stream"):
            encoded = encode(self.chunks, body=body, fail=self.fail_stream)
            return httpx2.Response(200, headers={"content-type": "text/event-stream", "request-id": "req_sdk"}, content=encoded)
        return httpx2.Response(200, headers={"request-id": "req_sdk"}, json=WIRE.from_chat(self.answer, request=body))


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
def client(upstream: Upstream) -> Iterator[anthropic.Anthropic]:
    http = httpx2.Client(transport=httpx2.MockTransport(upstream))
    sdk = anthropic.Anthropic(api_key="syn_test", base_url="http://gateway.test", http_client=http, max_retries=0)
    yield sdk
    sdk.close()


def test_the_sdk_reads_an_answer(client: anthropic.Anthropic, upstream: Upstream) -> None:
    result = client.messages.create(
        model="claude-gw",
        max_tokens=64,
        system=[{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hi"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                ],
            }
        ],
        metadata={"user_id": "u-1"},
        stop_sequences=["END"],
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        thinking={"type": "enabled", "budget_tokens": 1024},
        output_config={"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}},
        service_tier="standard_only",
        speed="standard",
        extra_body={"temperature": 0.2, "top_k": 5},
    )
    assert isinstance(result.content[0], TextBlock) and result.content[0].text == "Hello!"
    assert result._request_id == "req_sdk"
    seen = upstream.seen[0]
    assert seen["messages"][0] == {"role": "system", "content": "Be terse."}
    assert seen["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    assert (seen["user"], seen["temperature"], seen["stop"], seen["max_tokens"]) == ("u-1", 0.2, ["END"], 64)
    assert (seen["tools"], seen["tool_choice"], seen["parallel_tool_calls"]) == ([WEATHER_FUNCTION], "required", False)
    assert seen["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert not {"thinking", "top_k", "service_tier", "speed", "output_config"} & seen.keys()


def test_the_sdk_runs_a_tool_loop(client: anthropic.Anthropic, upstream: Upstream) -> None:
    upstream.answer = answer(
        text="", tool_calls=[tool_call("call_7", "get_weather", {"city": "Paris"})], finish_reason="tool_calls"
    )
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.messages.create(
        model="claude-gw", max_tokens=64, messages=messages, tools=[WEATHER], tool_choice={"type": "auto"}
    )
    assert first.stop_reason == "tool_use" and isinstance(first.content[0], ToolUseBlock)
    # The SDK's own idiom: the answer's content goes back verbatim, then the tool's result.
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[0].id, "content": "18C"}]},
    ]
    upstream.answer = answer(text="It is 18C in Paris.")
    second = client.messages.create(model="claude-gw", max_tokens=64, messages=messages, tools=[WEATHER])
    assert isinstance(second.content[0], TextBlock) and second.content[0].text == "It is 18C in Paris."
    assert upstream.seen[1]["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_7", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_7", "content": "18C"},
    ]


def test_the_sdk_accumulates_a_stream(client: anthropic.Anthropic, upstream: Upstream) -> None:
    upstream.chunks = streamed(["Let me ", "check."], [("call_1", "get_weather", ['{"city":', ' "Oslo"}'])], finish="tool_calls")
    with client.messages.stream(
        model="claude-gw", max_tokens=64, messages=[{"role": "user", "content": "Oslo?"}], tools=[WEATHER]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Let me check."
    assert [block.type for block in final.content] == ["text", "tool_use"]
    assert isinstance(final.content[1], ToolUseBlock) and final.content[1].input == {"city": "Oslo"}
    assert final.stop_reason == "tool_use" and final.usage.input_tokens == 5 and final.usage.output_tokens == 7
    assert upstream.seen[0]["stream"] is True


def test_the_sdk_iterates_raw_events(client: anthropic.Anthropic) -> None:
    events = list(
        client.messages.create(model="claude-gw", max_tokens=64, messages=[{"role": "user", "content": "Hi"}], stream=True)
    )
    assert [event.type for event in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_the_sdk_raises_on_a_mid_stream_error(client: anthropic.Anthropic, upstream: Upstream) -> None:
    upstream.chunks = streamed(["partial"])[:1]
    upstream.fail_stream = errors.dlp_response_blocked(("credit card",))
    hello: Any = [{"role": "user", "content": "Hi"}]
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model="claude-gw", max_tokens=64, messages=hello) as stream,
    ):
        stream.get_final_message()
    assert caught.value.type == "invalid_request_error" and caught.value.error_code == "dlp_response_blocked"


@pytest.mark.parametrize(("exc", "error_type", "exception"), ERRORS)
def test_the_sdk_raises_the_class_for_each_refusal(
    client: anthropic.Anthropic, upstream: Upstream, exc: GatewayError, error_type: str, exception: type
) -> None:
    upstream.refuse = exc
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="claude-gw", max_tokens=64, messages=[{"role": "user", "content": "Hi"}])
    assert type(caught.value) is exception
    assert caught.value.status_code == exc.status and caught.value.request_id == "req_sdk"
    assert caught.value.type == error_type and caught.value.error_code == exc.code
    assert caught.value.api_message is not None and caught.value.api_message.endswith(f"({exc.code})")


def test_the_sdk_sees_a_bad_request_naming_the_field(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="claude-gw",
            max_tokens=64,
            messages=[{"role": "user", "content": "Search the web"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )
    assert "tools[0].type" in str(caught.value.api_message) and caught.value.error_code == "unsupported_tool"


def test_the_sdk_counts_tokens(client: anthropic.Anthropic, upstream: Upstream) -> None:
    counted = client.messages.count_tokens(
        model="claude-gw", system="Be brief.", messages=[{"role": "user", "content": "Hi"}], tools=[WEATHER]
    )
    assert counted.input_tokens == 31
    assert upstream.seen[0]["tools"] == [WEATHER_FUNCTION] and "max_tokens" not in upstream.seen[0]


# ── fuzz: no JSON value anywhere makes the wire raise anything but a GatewayError ───────

RICH = {
    "model": "claude-gw",
    "max_tokens": 100,
    "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "a"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "t", "signature": "s"},
                {"type": "text", "text": "b"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "18C"}],
                    "is_error": False,
                },
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/x.png"}},
            ],
        },
    ],
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 3,
    "stream": True,
    "metadata": {"user_id": "u"},
    "tools": [WEATHER],
    "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}},
}


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["null", "bool", "int", "float", "str", "list", "dict"] if depth < 3 else ["null", "bool", "int", "float", "str"]
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, 1, -1, 5, 2**63, rng.randint(-1000, 1000)])
    if kind == "float":
        return rng.choice([0.0, 0.5, 1.0, 1.5, -0.1, 1e308, float("nan"), float("inf")])
    if kind == "str":
        return rng.choice(
            [
                "",
                "text",
                "user",
                "assistant",
                "tool_use",
                "tool_result",
                "image",
                "base64",
                "url",
                "auto",
                "toolu_1",
                "\x00",
                "é" * 3,
            ]
        )
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {
        rng.choice(["type", "text", "content", "role", "x", "name", "source"]): random_json(rng, depth + 1)
        for _ in range(rng.randint(0, 3))
    }


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def mutate(rng: random.Random, body: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(json.dumps(body))
    for _ in range(rng.randint(1, 3)):
        path = rng.choice([p for p in paths(body) if p])
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        action = rng.random()
        if action < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.25 and isinstance(parent, dict):
            parent[rng.choice(["extra", "type", "cache_control", "role"])] = random_json(rng)
        else:
            parent[path[-1]] = random_json(rng)
    return body


COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking", "output_config")


@pytest.mark.parametrize("door", ["create", "count_tokens"])
def test_fuzzed_bodies_give_a_gateway_error_or_a_valid_chat_body(door: str) -> None:
    translate = WIRE.to_chat if door == "create" else to_chat_for_count
    template = RICH if door == "create" else {key: RICH[key] for key in COUNT_FIELDS}
    assert validate_chat(translate(template)) == "claude-gw"  # unmutated, the template is valid
    rng = random.Random(20261202)
    outcomes = {"error": 0, "chat": 0}
    for _ in range(2000):
        body = mutate(rng, template)
        try:
            result = translate(body)
        except GatewayError as exc:
            assert exc.status == 400 and exc.param and exc.message
            outcomes["error"] += 1
            continue
        validate_chat(result)
        json.dumps(result)
        outcomes["chat"] += 1
    assert outcomes["error"] > 500 and outcomes["chat"] > 100  # both branches were really exercised


def test_fuzzed_completions_and_chunks_always_give_sdk_valid_answers() -> None:
    rng = random.Random(7)
    calls = [tool_call("call_1", "f", {"a": 1})]
    base_answer = answer(text="t", tool_calls=calls, finish_reason="tool_calls", usage=usage(10, 2, cached=3))
    for _ in range(500):
        mutated = mutate(rng, base_answer)
        Message.model_validate(WIRE.from_chat(mutated, request=request()))
        chunks = [mutate(rng, chunk) for chunk in streamed(["a", "b"], [("call_1", "f", ['{"a":', "1}"])])]
        encoder = WIRE.encoder(request=request(), model="claude-gw", request_id="r")
        raw = b"".join(piece for chunk in chunks for piece in encoder.chunk(chunk)) + b"".join(encoder.finish())
        validated(raw)
