"""A fake Anthropic Messages API (POST /v1/messages), strict where the real one is strict.

Wire format as in Anthropic's API reference and the official SDK's types (`Message`,
`RawMessageStreamEvent`, `Usage`, `ErrorResponse`): named SSE events message_start,
content_block_start / _delta (text_delta, input_json_delta) / _stop, ping, message_delta
(with cumulative usage), message_stop, and `error`; error bodies
`{"type": "error", "error": {"type", "message"}, "request_id"}`.

It rejects what the real API rejects and an adapter could plausibly get wrong: a missing
x-api-key or anthropic-version, no max_tokens, unknown top-level fields, a `system` role in
`messages`, empty text blocks, temperature above 1, and tool_result blocks that answer no
tool_use of the previous assistant turn.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from .base import FakeProvider, Received, Reply, sse_lines

REQUEST_FIELDS = {
    "model", "max_tokens", "messages", "system", "stop_sequences", "stream", "temperature", "top_p", "top_k",
    "tools", "tool_choice", "metadata", "output_config", "thinking", "service_tier", "container",
}  # fmt: skip
BLOCK_TYPES = {"text", "image", "document", "tool_use", "tool_result"}
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}


@dataclass
class Answer:
    """What the fake model says next. `text=None` echoes the last user text."""

    text: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, input)
    stop_reason: str | None = None  # default: tool_use with tool calls, else end_turn
    cache_read_input_tokens: int = 0
    stream_error: str | None = None  # e.g. "overloaded_error": sent as an `error` event after message_start
    drop_after: int | None = None  # streams: close the connection after this many events


def _error(status: int, kind: str, message: str) -> Reply:
    request_id = f"req_{uuid.uuid4().hex[:24]}"
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return Reply(status=status, body=body, headers={"request-id": body["request_id"]})


def _words(value: Any) -> int:
    """Token stand-in: whitespace-separated words of every text inside `value`."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(item) for item in value)
    if isinstance(value, dict):
        return sum(_words(item) for key, item in value.items() if key in ("text", "content", "system", "messages", "input"))
    return 0


class FakeAnthropic(FakeProvider):
    def __init__(self, *, api_key: str = "sk-ant-fake-credential-0001") -> None:
        super().__init__()
        self.api_key = api_key
        self.answer = Answer()

    def reset(self) -> None:
        super().reset()
        self.answer = Answer()

    # ── validation, as the real API answers ──
    def _invalid(self, received: Received) -> Reply | None:
        if received.path != "/v1/messages":
            return _error(404, "not_found_error", f"Not Found: {received.path}")
        if received.headers.get("x-api-key") != self.api_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not received.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        body = received.body
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "There was an error parsing the body of your request")
        if extra := sorted(set(body) - REQUEST_FIELDS):
            return _error(400, "invalid_request_error", f"{extra[0]}: Extra inputs are not permitted")
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            return _error(400, "invalid_request_error", "max_tokens: Field required")
        if not isinstance(body.get("temperature", 0), int | float) or not 0 <= body.get("temperature", 0) <= 1:
            return _error(400, "invalid_request_error", "temperature: range: 0..1")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "invalid_request_error", "messages: at least one message is required")
        previous_tool_uses: set[str] = set()
        for position, message in enumerate(messages):
            if message.get("role") not in ("user", "assistant"):
                return _error(400, "invalid_request_error", f"messages.{position}.role: Input should be 'user' or 'assistant'")
            content = message.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            if not isinstance(blocks, list) or not blocks:
                return _error(400, "invalid_request_error", f"messages.{position}: content must be non-empty")
            tool_uses: set[str] = set()
            for block in blocks:
                problem = self._block_problem(block, previous_tool_uses)
                if problem:
                    return _error(400, "invalid_request_error", f"messages.{position}.content: {problem}")
                if block.get("type") == "tool_use":
                    tool_uses.add(block.get("id", ""))
            previous_tool_uses = tool_uses
        for tool in body.get("tools") or []:
            if not tool.get("name") or not isinstance(tool.get("input_schema"), dict):
                return _error(400, "invalid_request_error", "tools: each tool needs a name and an input_schema")
        return None

    @staticmethod
    def _block_problem(block: Any, previous_tool_uses: set[str]) -> str | None:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in BLOCK_TYPES:
            return f"unknown content block type {kind!r}"
        if kind == "text" and not block.get("text"):
            return "text content blocks must be non-empty"
        if kind == "image":
            source = block.get("source") or {}
            if source.get("type") == "base64" and source.get("media_type") not in IMAGE_TYPES:
                return "image source media_type is not supported"
            if source.get("type") not in ("base64", "url"):
                return "image source type must be base64 or url"
        if kind == "tool_result" and block.get("tool_use_id") not in previous_tool_uses:
            return "tool_result block(s) provided without a matching tool_use block in the previous message"
        if kind == "tool_use" and not isinstance(block.get("input"), dict):
            return "tool_use.input: Input should be a valid dictionary"
        return None

    # ── answers ──
    def respond(self, received: Received) -> Reply:
        if (problem := self._invalid(received)) is not None:
            return problem
        body = received.body
        answer = self.answer
        text = answer.text if answer.text is not None else f"echo: {self._last_user_text(body)}"
        calls = [(f"toolu_{uuid.uuid4().hex[:24]}", name, arguments) for name, arguments in answer.tool_calls]
        stop_reason = answer.stop_reason or ("tool_use" if calls else "end_turn")
        usage = {
            "input_tokens": _words(body.get("system")) + _words(body["messages"]),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": answer.cache_read_input_tokens,
            "output_tokens": _words(text) + sum(_words(json.dumps(arguments)) for _, _, arguments in calls),
            "service_tier": "standard",
        }
        message_id = f"msg_{uuid.uuid4().hex[:24]}"
        if body.get("stream"):
            reply = self._stream(message_id, body["model"], text, calls, stop_reason, usage, answer.stream_error)
            reply.drop_after = answer.drop_after
            return reply
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        content += [{"type": "tool_use", "id": call_id, "name": name, "input": args} for call_id, name, args in calls]
        return Reply(
            body={
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": usage,
            }
        )

    @staticmethod
    def _last_user_text(body: dict[str, Any]) -> str:
        for message in reversed(body["messages"]):
            if message["role"] != "user":
                continue
            content = message["content"]
            if isinstance(content, str):
                return content
            return " ".join(block["text"] for block in content if block.get("type") == "text")
        return ""

    @staticmethod
    def _stream(
        message_id: str,
        model: str,
        text: str,
        calls: list[tuple[str, str, dict[str, Any]]],
        stop_reason: str,
        usage: dict[str, Any],
        stream_error: str | None,
    ) -> Reply:
        events: list[tuple[str, dict[str, Any]]] = []
        start_usage = {**usage, "output_tokens": 1}
        events.append(
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": message_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            )
        )
        if stream_error:
            events.append(("error", {"type": "error", "error": {"type": stream_error, "message": "Overloaded"}}))
            return Reply(chunks=list(sse_lines((name, json.dumps(data)) for name, data in events)))
        index = 0
        if text:
            block: dict[str, Any] = {"type": "text", "text": ""}
            events.append(("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}))
            events.append(("ping", {"type": "ping"}))
            words = text.split(" ")
            for position, word in enumerate(words):
                piece = word if position == len(words) - 1 else word + " "
                delta = {"type": "text_delta", "text": piece}
                events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
            index = 1
        for call_id, name, arguments in calls:
            block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
            encoded = json.dumps(arguments)
            # The real API opens with an empty partial_json, then sends the JSON in arbitrary cuts.
            for piece in ["", encoded[: len(encoded) // 2], encoded[len(encoded) // 2 :]]:
                delta = {"type": "input_json_delta", "partial_json": piece}
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
            index += 1
        # message_delta's usage is cumulative and, since 2025, repeats the input counts.
        final_usage = {key: value for key, value in usage.items() if key != "service_tier"}
        events.append(
            (
                "message_delta",
                {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": final_usage},
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return Reply(chunks=list(sse_lines((name, json.dumps(data)) for name, data in events)))
