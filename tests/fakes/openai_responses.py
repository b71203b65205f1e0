"""A fake OpenAI Responses API (POST /v1/responses), strict where the real one is strict.

Wire format as the official SDK's types define it (`openai.types.responses`): the request is
validated against `ResponseCreateParamsNonStreaming` / `Streaming` (unknown top-level fields
refused the way OpenAI words it); the answer is a `Response`; a stream is the named SSE
events `response.created`, `response.in_progress`, `response.output_item.added` / `.done`,
`response.content_part.added` / `.done`, `response.output_text.delta` / `.done`,
`response.function_call_arguments.delta` / `.done`, then `response.completed` or
`response.incomplete` — or an `error` / `response.failed` event. Error bodies are OpenAI's
`{"error": {"message", "type", "param", "code"}}`.

It also refuses what the real API refuses and an adapter could plausibly get wrong: a
`function_call_output` that answers no earlier `function_call` in the input.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .base import FakeProvider, Received, Reply, sse_lines


@dataclass
class Answer:
    """What the fake model says next. `text=None` echoes the last user text."""

    text: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, arguments)
    refusal: str | None = None  # a refusal part instead of the text
    incomplete: str | None = None  # "max_output_tokens" | "content_filter": status incomplete
    reasoning: bool = True  # a reasoning item before the answer, as reasoning models send
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    stream_error: str | None = None  # an `error` event with this code after response.in_progress
    failed: str | None = None  # a `response.failed` event (or failed Response) with this code
    drop_after: int | None = None  # streams: close the connection after this many events


@cache
def _validators() -> tuple[TypeAdapter[Any], TypeAdapter[Any], frozenset[str]]:
    from openai.types.responses.response_create_params import (
        ResponseCreateParamsNonStreaming,
        ResponseCreateParamsStreaming,
    )

    fields = ResponseCreateParamsStreaming.__required_keys__ | ResponseCreateParamsStreaming.__optional_keys__
    return TypeAdapter(ResponseCreateParamsNonStreaming), TypeAdapter(ResponseCreateParamsStreaming), frozenset(fields)


def error_reply(status: int, message: str, *, kind: str = "invalid_request_error", param: str | None = None,
                code: str | None = None, headers: dict[str, str] | None = None) -> Reply:  # fmt: skip
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Reply(status=status, body=body, headers={"x-request-id": f"req_{uuid.uuid4().hex[:24]}", **(headers or {})})


def _words(value: Any) -> int:
    """Token stand-in: whitespace-separated words of every text inside `value`."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(item) for item in value)
    if isinstance(value, dict):
        return sum(_words(item) for key, item in value.items() if key in ("text", "content", "output", "input", "arguments"))
    return 0


class FakeOpenAIResponses(FakeProvider):
    def __init__(self, *, api_key: str = "sk-fake-cloud-credential") -> None:
        super().__init__()
        self.api_key = api_key
        self.answer = Answer()

    def reset(self) -> None:
        super().reset()
        self.answer = Answer()

    # ── validation, as the real API answers ──
    def _invalid(self, received: Received) -> Reply | None:
        if received.path != "/v1/responses":
            return error_reply(404, f"Invalid URL (POST {received.path})")
        if received.headers.get("authorization") != f"Bearer {self.api_key}":
            return error_reply(401, "Incorrect API key provided.", code="invalid_api_key")
        body = received.body
        if not isinstance(body, dict):
            return error_reply(400, "We could not parse the JSON body of your request.")
        non_streaming, streaming, fields = _validators()
        if extra := sorted(set(body) - fields):
            return error_reply(400, f"Unknown parameter: '{extra[0]}'.", param=extra[0], code="unknown_parameter")
        try:
            (streaming if body.get("stream") else non_streaming).validate_python(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return error_reply(400, f"Invalid value at '{where}': {first['msg']}", param=where)
        calls: set[str] = set()
        for position, item in enumerate(body["input"] if isinstance(body["input"], list) else []):
            if item.get("type") == "function_call":
                calls.add(item["call_id"])
            if item.get("type") == "function_call_output" and item["call_id"] not in calls:
                return error_reply(
                    400,
                    f"No tool call found for function call output with call_id {item['call_id']}.",
                    param=f"input[{position}]",
                )
        return None

    # ── answers ──
    def respond(self, received: Received) -> Reply:
        if (problem := self._invalid(received)) is not None:
            return problem
        body = received.body
        answer = self.answer
        text = answer.text if answer.text is not None else f"echo: {self._last_user_text(body)}"
        calls = [
            (f"fc_{uuid.uuid4().hex}", f"call_{uuid.uuid4().hex[:24]}", name, json.dumps(arguments))
            for name, arguments in answer.tool_calls
        ]
        output_tokens = _words(text) + sum(_words(arguments) for *_, arguments in calls) + answer.reasoning_tokens
        input_tokens = _words(body.get("instructions")) + _words(body["input"])
        usage: dict[str, Any] = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": answer.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
            "total_tokens": input_tokens + output_tokens,
        }
        response = self._response(body, f"resp_{uuid.uuid4().hex}", "in_progress")
        output = self._output(text, calls, answer)
        if answer.failed:
            final = {**response, "status": "failed", "error": {"code": answer.failed, "message": f"fake {answer.failed}"}}
        elif answer.incomplete:
            final = {**response, "status": "incomplete", "incomplete_details": {"reason": answer.incomplete}}
        else:
            final = {**response, "status": "completed", "completed_at": response["created_at"] + 1}
        final = {**final, "output": output, "usage": usage}
        if body.get("stream"):
            reply = self._stream(response, final, answer)
            reply.drop_after = answer.drop_after
            return reply
        return Reply(body=final)

    @staticmethod
    def _response(body: dict[str, Any], response_id: str, status: str) -> dict[str, Any]:
        """The Response object, echoing the request's settings as the real API does."""
        return {
            "id": response_id,
            "object": "response",
            "created_at": 1_767_225_600,
            "status": status,
            "background": False,
            "completed_at": None,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": body["model"],
            "output": [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": None,
            "user": None,
            "metadata": {},
        }

    @staticmethod
    def _output(text: str, calls: list[tuple[str, str, str, str]], answer: Answer) -> list[dict[str, Any]]:
        status = "incomplete" if answer.incomplete else "completed"
        output: list[dict[str, Any]] = []
        if answer.reasoning:
            output.append({"type": "reasoning", "id": f"rs_{uuid.uuid4().hex}", "summary": []})
        if answer.refusal is not None:
            parts: list[dict[str, Any]] = [{"type": "refusal", "refusal": answer.refusal}]
        else:
            parts = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if text else []
        if parts:
            output.append(
                {"type": "message", "id": f"msg_{uuid.uuid4().hex}", "role": "assistant", "status": status, "content": parts}
            )
        for item_id, call_id, name, arguments in calls:
            output.append(
                {
                    "type": "function_call",
                    "id": item_id,
                    "call_id": call_id,
                    "name": name,
                    "arguments": arguments,
                    "status": status,
                }
            )
        return output

    @staticmethod
    def _last_user_text(body: dict[str, Any]) -> str:
        items = body["input"]
        if isinstance(items, str):
            return items
        for item in reversed(items):
            if item.get("role") != "user":
                continue
            content = item["content"]
            if isinstance(content, str):
                return content
            return " ".join(part["text"] for part in content if part.get("type") == "input_text")
        return ""

    @staticmethod
    def stream_events(started: dict[str, Any], final: dict[str, Any], answer: Answer) -> list[dict[str, Any]]:
        """The event stream of one answer, each event as the SDK's ResponseStreamEvent types say."""
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": started},
            {"type": "response.in_progress", "response": started},
        ]
        if answer.stream_error:
            events.append({"type": "error", "code": answer.stream_error, "message": f"fake {answer.stream_error}", "param": None})
        elif answer.failed:
            events.append({"type": "response.failed", "response": final})
        else:
            for index, item in enumerate(final["output"]):
                events.extend(FakeOpenAIResponses._item_events(index, item))
            events.append({"type": f"response.{final['status']}", "response": final})
        return [{**event, "sequence_number": number} for number, event in enumerate(events)]

    @staticmethod
    def _item_events(index: int, item: dict[str, Any]) -> list[dict[str, Any]]:
        where = {"output_index": index, "item_id": item["id"]}
        if item["type"] == "reasoning":
            return [
                {"type": "response.output_item.added", "output_index": index, "item": item},
                {"type": "response.output_item.done", "output_index": index, "item": item},
            ]
        if item["type"] == "function_call":
            arguments = item["arguments"]
            half = len(arguments) // 2
            return [
                {
                    "type": "response.output_item.added",
                    "output_index": index,
                    "item": {**item, "arguments": "", "status": "in_progress"},
                },
                {"type": "response.function_call_arguments.delta", **where, "delta": arguments[:half]},
                {"type": "response.function_call_arguments.delta", **where, "delta": arguments[half:]},
                {"type": "response.function_call_arguments.done", **where, "name": item["name"], "arguments": arguments},
                {"type": "response.output_item.done", "output_index": index, "item": item},
            ]
        events = [
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "content": [], "status": "in_progress"},
            }
        ]
        for part_index, part in enumerate(item["content"]):
            at = {**where, "content_index": part_index}
            if part["type"] == "refusal":
                events.append({"type": "response.content_part.added", **at, "part": {"type": "refusal", "refusal": ""}})
                events.append({"type": "response.refusal.delta", **at, "delta": part["refusal"]})
                events.append({"type": "response.refusal.done", **at, "refusal": part["refusal"]})
            else:
                empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                events.append({"type": "response.content_part.added", **at, "part": empty})
                words = part["text"].split(" ")
                for position, word in enumerate(words):
                    piece = word if position == len(words) - 1 else word + " "
                    events.append({"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []})
                events.append({"type": "response.output_text.done", **at, "text": part["text"], "logprobs": []})
            events.append({"type": "response.content_part.done", **at, "part": part})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
        return events

    def _stream(self, started: dict[str, Any], final: dict[str, Any], answer: Answer) -> Reply:
        events = self.stream_events(started, final, answer)
        return Reply(chunks=list(sse_lines((event["type"], json.dumps(event)) for event in events)))
