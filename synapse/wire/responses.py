"""The OpenAI Responses API door (`POST /v1/responses`).

The request becomes a canonical chat-completions body (`responses_request`); the canonical
answer becomes a `Response` object, and the canonical chunk stream becomes the Responses
event stream (`response.created` … `response.completed`, each event with its `event:` line
and a `sequence_number`). Shapes follow the official SDK's types (`openai.types.responses`).

Output items: the answer's text (and refusal) is one `message` item; each tool call is a
`function_call` item whose `call_id` is the chat tool call's id, so the client's
`function_call_output` finds its way back. Nothing is stored: every answer says
`store: false`, and `previous_response_id` is always null.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from django.http import HttpResponse

from synapse.errors import GatewayError, error_response

from .base import StreamEncoder, Wire, sse
from .responses_request import SERVICE_TIERS, read_request, settings_echo

# Chat finish reasons that end a Response early, as the Response's incomplete_details say.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def usage(chat: Any) -> dict[str, Any] | None:
    """Chat usage as the Responses API counts it (None when the backend reported none)."""
    if not isinstance(chat, dict):
        return None

    def count(source: Any, name: str) -> int:
        value = source.get(name) if isinstance(source, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    prompt, completion = count(chat, "prompt_tokens"), count(chat, "completion_tokens")
    return {
        "input_tokens": prompt,
        # Chat completions reports cache reads only; writes are not counted separately.
        "input_tokens_details": {
            "cached_tokens": count(chat.get("prompt_tokens_details"), "cached_tokens"),
            "cache_write_tokens": 0,
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": count(chat.get("completion_tokens_details"), "reasoning_tokens")},
        "total_tokens": count(chat, "total_tokens") or prompt + completion,
    }


def response_object(
    *,
    response_id: str,
    created_at: int,
    model: str,
    echo: dict[str, Any],
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    finish_reason: str | None = None,
    service_tier: Any = None,
) -> dict[str, Any]:
    reason = INCOMPLETE.get(finish_reason or "") if status != "in_progress" else None
    if reason is not None:
        status = "incomplete"
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "model": model,
        "output": output,
        "usage": usage,
        **echo,
        # The tier that served the request, when the backend says so; else what was asked.
        "service_tier": service_tier if isinstance(service_tier, str) and service_tier in SERVICE_TIERS else echo["service_tier"],
        "background": False,
        "previous_response_id": None,
        "store": False,
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    return ""


def _output(message: dict[str, Any], item_status: str) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    parts = []
    if text := _text_of(message.get("content")):
        parts.append(output_text(text))
    if isinstance(refusal := message.get("refusal"), str) and refusal:
        parts.append({"type": "refusal", "refusal": refusal})
    if parts:
        output.append({"type": "message", "id": new_id("msg"), "role": "assistant", "status": item_status, "content": parts})
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        call_id = call.get("id")
        output.append(
            {
                "type": "function_call",
                "id": new_id("fc"),
                "call_id": call_id if isinstance(call_id, str) and call_id else new_id("call"),
                "name": function.get("name") if isinstance(function.get("name"), str) else "",
                "arguments": function.get("arguments") if isinstance(function.get("arguments"), str) else "",
                "status": item_status,
            }
        )
    return output


class ResponsesWire(Wire):
    endpoint = "responses"

    def to_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return read_request(body)[0]

    def from_chat(self, completion: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        choices = completion.get("choices")
        choice = _object(choices[0]) if isinstance(choices, list) and choices else {}
        message = _object(choice.get("message"))
        finish_reason = choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None
        item_status = "incomplete" if finish_reason in INCOMPLETE else "completed"
        created = completion.get("created")
        return response_object(
            response_id=new_id("resp"),
            created_at=created if isinstance(created, int) and not isinstance(created, bool) else int(time.time()),
            model=str(completion.get("model") or request.get("model") or ""),
            echo=settings_echo(request),
            status="completed",
            output=_output(message, item_status),
            usage=usage(completion.get("usage")),
            finish_reason=finish_reason,
            service_tier=completion.get("service_tier"),
        )

    def encoder(self, *, request: dict[str, Any], model: str, request_id: str) -> StreamEncoder:
        return ResponsesStream(echo=settings_echo(request), model=model)

    def error_response(self, exc: GatewayError, *, request_id: str) -> HttpResponse:
        # The Responses API's errors have chat's shape ({"error": {message, type, param, code}}).
        return error_response(exc, request_id=request_id)


# ── streaming ──────────────────────────────────────────────────────────────────────────


class _Message:
    """The answer's message item while it streams: its parts in order of first appearance."""

    def __init__(self, output_index: int) -> None:
        self.id = new_id("msg")
        self.output_index = output_index
        self.parts: list[dict[str, Any]] = []
        self.text_index: int | None = None
        self.refusal_index: int | None = None

    def item(self, status: str) -> dict[str, Any]:
        return {"type": "message", "id": self.id, "role": "assistant", "status": status, "content": [dict(p) for p in self.parts]}


class _Call:
    """One tool call while it streams. Announced (`output_item.added`) once its id and name
    are known, so the item's identity never changes; arguments seen before are sent then."""

    def __init__(self) -> None:
        self.id = new_id("fc")
        self.call_id = ""
        self.name = ""
        self.arguments = ""
        self.output_index: int | None = None

    def item(self, status: str, *, arguments: str | None = None) -> dict[str, Any]:
        return {
            "type": "function_call",
            "id": self.id,
            "call_id": self.call_id,
            "name": self.name,
            "arguments": self.arguments if arguments is None else arguments,
            "status": status,
        }


class ResponsesStream(StreamEncoder):
    """The Responses event stream of one answer.

    Items stay open until the stream ends: output DLP holds back the end of every text and
    every tool call's arguments and releases those tails together in the last chunk, so a
    call's arguments can still grow after the next call (or the text) has begun. Each open
    item keeps its own `output_index`; `finish` closes them in that order.
    """

    def __init__(self, *, echo: dict[str, Any], model: str) -> None:
        self._echo = echo
        self._model = model
        self._id = new_id("resp")
        self._created_at = int(time.time())
        self._sequence = 0
        self._started = False
        self._ended = False
        self._output: list[_Message | _Call] = []
        self._message: _Message | None = None
        self._calls: dict[int, _Call] = {}
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None
        self._service_tier: Any = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return sse(data, event=kind)

    def _response(self, status: str) -> dict[str, Any]:
        finished = status != "in_progress"
        item_status = "incomplete" if finished and self._finish_reason in INCOMPLETE else status
        return response_object(
            response_id=self._id,
            created_at=self._created_at,
            model=self._model,
            echo=self._echo,
            status=status,
            output=[entry.item(item_status) for entry in self._output] if finished else [],
            usage=usage(self._usage) if finished else None,
            finish_reason=self._finish_reason if finished else None,
            service_tier=self._service_tier,
        )

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        return [
            self._event("response.created", response=self._response("in_progress")),
            self._event("response.in_progress", response=self._response("in_progress")),
        ]

    # ── text and refusal ──

    def _message_item(self, out: list[bytes]) -> _Message:
        if self._message is None:
            self._message = _Message(len(self._output))
            self._output.append(self._message)
            out.append(
                self._event(
                    "response.output_item.added", output_index=self._message.output_index, item=self._message.item("in_progress")
                )
            )
        return self._message

    def _part(self, out: list[bytes], message: _Message, part: dict[str, Any]) -> int:
        message.parts.append(part)
        index = len(message.parts) - 1
        out.append(
            self._event(
                "response.content_part.added",
                item_id=message.id,
                output_index=message.output_index,
                content_index=index,
                part=dict(part),
            )
        )
        return index

    def _text(self, out: list[bytes], delta: str) -> None:
        message = self._message_item(out)
        if message.text_index is None:
            message.text_index = self._part(out, message, output_text(""))
        index = message.text_index
        message.parts[index] = {**message.parts[index], "text": message.parts[index]["text"] + delta}
        out.append(
            self._event(
                "response.output_text.delta",
                item_id=message.id,
                output_index=message.output_index,
                content_index=index,
                delta=delta,
                logprobs=[],
            )
        )

    def _refusal(self, out: list[bytes], delta: str) -> None:
        message = self._message_item(out)
        if message.refusal_index is None:
            message.refusal_index = self._part(out, message, {"type": "refusal", "refusal": ""})
        index = message.refusal_index
        message.parts[index] = {**message.parts[index], "refusal": message.parts[index]["refusal"] + delta}
        out.append(
            self._event(
                "response.refusal.delta", item_id=message.id, output_index=message.output_index, content_index=index, delta=delta
            )
        )

    # ── tool calls ──

    def _announce(self, out: list[bytes], call: _Call) -> None:
        call.output_index = len(self._output)
        self._output.append(call)
        out.append(
            self._event("response.output_item.added", output_index=call.output_index, item=call.item("in_progress", arguments=""))
        )
        if call.arguments:
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=call.id,
                    output_index=call.output_index,
                    delta=call.arguments,
                )
            )

    def _tool_call(self, out: list[bytes], position: int, delta: dict[str, Any]) -> None:
        index = delta.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else position
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _Call()
        if isinstance(delta.get("id"), str) and delta["id"] and not call.call_id:
            call.call_id = delta["id"]
        function = _object(delta.get("function"))
        if isinstance(function.get("name"), str):
            call.name += function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            call.arguments += arguments
            if call.output_index is not None:
                out.append(
                    self._event(
                        "response.function_call_arguments.delta", item_id=call.id, output_index=call.output_index, delta=arguments
                    )
                )
        if call.output_index is None and call.call_id and call.name:
            self._announce(out, call)

    # ── the StreamEncoder interface ──

    def chunk(self, chunk: dict[str, Any]) -> Iterable[bytes]:
        if self._ended:
            return []
        out = self._start()
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        if chunk.get("service_tier") is not None:
            self._service_tier = chunk["service_tier"]
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            # One answer per Response: the canonical request never asks for more than one choice.
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = _object(choice.get("delta"))
            if isinstance(delta.get("content"), str) and delta["content"]:
                self._text(out, delta["content"])
            if isinstance(delta.get("refusal"), str) and delta["refusal"]:
                self._refusal(out, delta["refusal"])
            calls = delta.get("tool_calls")
            for position, call in enumerate(calls if isinstance(calls, list) else []):
                if isinstance(call, dict):
                    self._tool_call(out, position, call)
            if isinstance(choice.get("finish_reason"), str):
                self._finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> Iterable[bytes]:
        if self._ended:
            return []
        out = self._start()
        for index in sorted(self._calls):
            call = self._calls[index]
            if call.output_index is None:
                # The backend never said the call's id (or name): it still gets an item.
                call.call_id = call.call_id or new_id("call")
                self._announce(out, call)
        incomplete = self._finish_reason in INCOMPLETE
        item_status = "incomplete" if incomplete else "completed"
        for entry in self._output:
            if isinstance(entry, _Message):
                self._close_message(out, entry, item_status)
            else:
                assert entry.output_index is not None
                out.append(
                    self._event(
                        "response.function_call_arguments.done",
                        item_id=entry.id,
                        output_index=entry.output_index,
                        arguments=entry.arguments,
                    )
                )
                out.append(
                    self._event("response.output_item.done", output_index=entry.output_index, item=entry.item(item_status))
                )
        final = self._response("completed")
        out.append(self._event(f"response.{final['status']}", response=final))
        self._ended = True
        return out

    def _close_message(self, out: list[bytes], message: _Message, status: str) -> None:
        where = {"item_id": message.id, "output_index": message.output_index}
        for index, part in enumerate(message.parts):
            if part["type"] == "output_text":
                out.append(self._event("response.output_text.done", **where, content_index=index, text=part["text"], logprobs=[]))
            else:
                out.append(self._event("response.refusal.done", **where, content_index=index, refusal=part["refusal"]))
            out.append(self._event("response.content_part.done", **where, content_index=index, part=dict(part)))
        out.append(self._event("response.output_item.done", output_index=message.output_index, item=message.item(status)))

    def error(self, exc: GatewayError) -> Iterable[bytes]:
        if self._ended:
            return []
        # `response.created` first even here: the SDK's stream helper expects it before anything.
        out = self._start()
        # The documented event carries code/message/param at the top level; OpenAI's servers
        # also nest them under `error`, which is what makes the official SDKs raise an APIError.
        fields = {"code": exc.code, "message": exc.message, "param": exc.param}
        out.append(self._event("error", **fields, error={"type": exc.type, **fields}))
        self._ended = True
        return out
