"""Anthropic's Messages API behind the OpenAI chat interface.

Request: the system/developer messages (the bound prompt first) become the top-level `system`;
tool calls and results become `tool_use` / `tool_result` blocks; images become `image` blocks;
`max_tokens`, which Anthropic requires, is always set. Response: a Message becomes a
`chat.completion`, and the event stream becomes `chat.completion.chunk` dicts.

Checked against the Messages and streaming API references and the official SDK's types
(anthropic-sdk-python: MessageCreateParams, RawMessageStreamEvent, Usage, StopReason).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .base import UpstreamError
from .http import HttpAdapter
from .openai_shapes import (
    DEFAULT_MAX_TOKENS,
    ChunkWriter,
    completion,
    function_tools,
    max_output_tokens,
    parse_data_url,
    reject_unsupported,
    stop_sequences,
    text_of,
    tool_arguments,
    tool_call,
    unsupported,
    usage,
)
from .sse import SSEvent, event_json

API_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Error types of a mid-stream `error` event, which arrives after a 200: status, retryable.
STREAM_ERRORS = {
    "overloaded_error": (503, True),
    "rate_limit_error": (429, True),
    "api_error": (502, True),
    "timeout_error": (504, True),
    "invalid_request_error": (400, False),
    "request_too_large": (400, False),
}


def _image_block(url: str) -> dict[str, Any]:
    inline = parse_data_url(url)
    if inline is None:
        if not url.startswith(("https://", "http://")):
            raise unsupported("image_url must be an http(s) URL or a base64 data URL")
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = inline
    if media_type not in IMAGE_TYPES:
        raise unsupported(f"Anthropic accepts JPEG, PNG, GIF and WebP images, not {media_type}")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        text = text_of(content)
        return [{"type": "text", "text": text}] if text else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            blocks.append(_image_block(image.get("url", "") if isinstance(image, dict) else str(image or "")))
        elif kind == "file" and str((part.get("file") or {}).get("file_data", "")).startswith("data:application/pdf"):
            _, data = parse_data_url(part["file"]["file_data"]) or ("", "")
            blocks.append({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data}})
        else:
            raise unsupported(f"content parts of type '{kind}' cannot be sent to an Anthropic backend")
    return blocks


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    text = text_of(message.get("content"))
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for call in message.get("tool_calls") or []:
        name = (call.get("function") or {}).get("name", "")
        blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": name, "input": tool_arguments(call)})
    return blocks


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id", "")}
    text = text_of(message.get("content"))
    if text:
        block["content"] = text
    return block


def _conversation(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages). Consecutive same-role turns are merged: Anthropic wants the
    results of parallel tool calls together in the one user turn after the tool_use turn."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            text = text_of(message.get("content"))
            if text:
                system.append({"type": "text", "text": text})
            continue
        if role == "user":
            native_role, blocks = "user", _user_blocks(message.get("content"))
        elif role == "assistant":
            native_role, blocks = "assistant", _assistant_blocks(message)
        elif role == "tool":
            native_role, blocks = "user", [_tool_result(message)]
        else:
            raise unsupported(f"messages with role '{role}' cannot be sent to an Anthropic backend")
        if not blocks:
            continue  # Anthropic rejects empty content, and an empty turn carries nothing
        if turns and turns[-1]["role"] == native_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": native_role, "content": blocks})
    return system, turns


def _tool_choice(body: dict[str, Any]) -> dict[str, Any] | None:
    choice, parallel = body.get("tool_choice"), body.get("parallel_tool_calls")
    if choice == "none":
        return {"type": "none"}
    if choice is None or choice == "auto":
        result: dict[str, Any] = {"type": "auto"}
    elif choice == "required":
        result = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        result = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    else:
        raise unsupported("tool_choice must be 'auto', 'none', 'required' or a function")
    if parallel is False:
        result["disable_parallel_tool_use"] = True
    elif choice is None:
        return None  # Anthropic's default is already auto
    return result


def to_messages_request(body: dict[str, Any], *, default_max_tokens: int | None, drop: list[str]) -> dict[str, Any]:
    reject_unsupported(body, "Anthropic")
    system, messages = _conversation(body.get("messages") or [])
    payload: dict[str, Any] = {
        "model": body["model"],
        "max_tokens": default_max_tokens or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        payload["system"] = system
    if stop := stop_sequences(body):
        payload["stop_sequences"] = stop
    if body.get("temperature") is not None:
        # OpenAI's range is 0..2, Anthropic's 0..1: the top of one is the top of the other.
        payload["temperature"] = min(float(body["temperature"]), 1.0)
    if body.get("top_p") is not None:
        payload["top_p"] = body["top_p"]
    tools = [
        {
            "name": function.get("name", ""),
            **({"description": function["description"]} if function.get("description") else {}),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        for function in function_tools(body)
    ]
    if tools:
        payload["tools"] = tools
        if (choice := _tool_choice(body)) is not None:
            payload["tool_choice"] = choice
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        payload["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    elif response_format.get("type") not in (None, "text"):
        raise unsupported("Anthropic backends support response_format 'text' and 'json_schema' only")
    if isinstance(body.get("user"), str) and body["user"]:
        payload["metadata"] = {"user_id": body["user"]}
    if body.get("stream"):
        payload["stream"] = True
    # Some models reject parameters others need (newer Claude models refuse `temperature`);
    # the operator lists them per backend in options.drop_params.
    for name in drop:
        payload.pop(name, None)
    return payload


def to_usage(native: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's input_tokens excludes cache reads and writes; OpenAI's prompt_tokens includes them."""
    cache_read = native.get("cache_read_input_tokens") or 0
    cache_write = native.get("cache_creation_input_tokens") or 0
    prompt = (native.get("input_tokens") or 0) + cache_read + cache_write
    return usage(prompt, native.get("output_tokens") or 0, cached=cache_read)


def to_completion(message: dict[str, Any]) -> dict[str, Any]:
    blocks = message.get("content") or []
    text = "".join(block.get("text", "") for block in blocks if block.get("type") == "text")
    calls = [
        tool_call(block.get("id", ""), block.get("name", ""), block.get("input") or {})
        for block in blocks
        if block.get("type") == "tool_use"
    ]
    return completion(
        response_id=message.get("id", ""),
        model=message.get("model", ""),
        text=text,
        tool_calls=calls,
        finish_reason=FINISH_REASONS.get(message.get("stop_reason") or "", "stop"),
        usage=to_usage(message.get("usage") or {}),
    )


def stream_error(error: dict[str, Any]) -> UpstreamError:
    kind = str(error.get("type", ""))
    status, retryable = STREAM_ERRORS.get(kind, (502, False))
    message = str(error.get("message") or kind)
    return UpstreamError(f"Anthropic reported {kind} mid-stream: {message}", status=status, retryable=retryable)


class StreamTranslator:
    """Anthropic stream events in, OpenAI chunks out (one instance per stream)."""

    def __init__(self, model: str) -> None:
        self.out = ChunkWriter(response_id="", model=model)
        self.native_usage: dict[str, Any] = {}
        self.finish_reason = "stop"
        self.tool_index: dict[int, int] = {}  # content block index -> OpenAI tool_calls index
        self.done = False

    def feed(self, event: SSEvent) -> list[dict[str, Any]]:
        data = event_json(event, "Anthropic")
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self.out.id = message.get("id", "")
            self.out.model = message.get("model") or self.out.model
            self.native_usage.update(message.get("usage") or {})
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self.tool_index[data.get("index", 0)] = len(self.tool_index)
                return [self.out.tool_call_start(index, block.get("id", ""), block.get("name", ""))]
            if block.get("type") == "text" and block.get("text"):
                return [self.out.text(block["text"])]
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [self.out.text(delta["text"])]
            if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                call_index = self.tool_index.get(data.get("index", 0))
                if call_index is not None:
                    return [self.out.tool_call_arguments(call_index, delta["partial_json"])]
        elif kind == "message_delta":
            stop_reason = (data.get("delta") or {}).get("stop_reason")
            if stop_reason:
                self.finish_reason = FINISH_REASONS.get(stop_reason, "stop")
            # message_delta usage is cumulative; a field it leaves out keeps message_start's value.
            self.native_usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self.done = True
            return [self.out.finish(self.finish_reason), self.out.usage(to_usage(self.native_usage))]
        elif kind == "error":
            raise stream_error(data.get("error") or {})
        # ping, content_block_stop, thinking blocks and event types added later carry nothing to forward.
        return []

    def close(self) -> list[dict[str, Any]]:
        if not self.done:
            raise UpstreamError(
                "Anthropic ended the stream before message_stop", status=502, retryable=True, code="upstream_stream_broken"
            )
        return []


class AnthropicAdapter(HttpAdapter):
    kind = "anthropic"
    label = "Anthropic"

    def url(self) -> str:
        base = (self.backend.base_url or DEFAULT_BASE_URL).rstrip("/")
        return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.backend.options.get("anthropic_version", API_VERSION)}
        credential = self.backend.credential()
        if credential:
            headers["x-api-key"] = credential
        return headers

    def payload(self, body: dict[str, Any]) -> dict[str, Any]:
        return to_messages_request(
            body,
            default_max_tokens=max_output_tokens(body, self.backend),
            drop=list(self.backend.options.get("drop_params") or []),
        )

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        payload = self.payload({**body, "stream": False})
        return to_completion(await self.post_json(self.url(), payload, self.headers()))

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        payload = self.payload({**body, "stream": True})
        return self.stream(self.url(), payload, self.headers(), StreamTranslator(model=body.get("model", "")))
