"""The Anthropic Messages API door (`/v1/messages`, `/v1/messages/count_tokens`), pure translation.

The inverse of `routing/adapters/anthropic.py`: a Messages request becomes the canonical chat
body the one pipeline governs (`messages_request.py`, which documents every field); the
canonical answer and chunk stream become a `Message` and Anthropic's event stream; a refusal
becomes Anthropic's error shape. No database, no HTTP. Checked against the official SDK's
types (anthropic 2.15: Message, RawMessageStreamEvent, MessageDeltaUsage, ErrorResponse).

Errors: Anthropic's body `{"type": "error", "error": {"type", "message", "details": {"error_code"}},
"request_id"}` with the gateway's status (the SDK picks its exception class from the status) and a
`request-id` header. The message ends with the gateway's code, e.g. "... (dlp_blocked)", which
`details.error_code` carries too (the SDK exposes it as `exc.error_code`).

    status  error.type              SDK exception
    400     invalid_request_error   BadRequestError
    401     authentication_error    AuthenticationError
    402     billing_error           PaymentRequiredError      (budget exhausted)
    403     permission_error        PermissionDeniedError
    404     not_found_error         NotFoundError
    405     invalid_request_error   APIStatusError            (Anthropic's type for other 4xx)
    413     request_too_large       ContentTooLargeError
    422     invalid_request_error   UnprocessableEntityError  (answer withheld by DLP)
    429     rate_limit_error        RateLimitError
    500     api_error               InternalServerError
    502     api_error               InternalServerError
    503     overloaded_error        ServiceUnavailableError   (temporary: retry later)
    504     timeout_error           GatewayTimeoutError
    other   api_error (5xx), invalid_request_error (4xx)
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from typing import Any

from django.http import HttpResponse, JsonResponse

from synapse.errors import GatewayError

from .base import StreamEncoder, Wire, sse
from .messages_request import to_chat, to_chat_for_count

__all__ = ["MessagesStreamEncoder", "MessagesWire", "count_tokens_response", "error_body", "to_chat_for_count"]

_FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def count_tokens_response(input_tokens: int) -> dict[str, Any]:
    """The `MessageTokensCount` answer of /v1/messages/count_tokens."""
    return {"input_tokens": input_tokens}


# ── answers ─────────────────────────────────────────────────────────────────────────────


def _dict(value: Any) -> dict[str, Any]:
    """A canonical object, or an empty one where a backend sent something else."""
    return value if isinstance(value, dict) else {}


def _message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


def _tool_use_id() -> str:
    return f"toolu_{secrets.token_hex(12)}"


def _tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's `input`, which Anthropic (and the SDK) require to be an object.

    Empty arguments mean a call without parameters. Arguments that are not a JSON object
    (a model's broken JSON) are kept verbatim under `_raw_arguments` rather than replaced by
    `{}`: the client's tool then fails on an unexpected input, visibly, instead of running
    with none — and whoever looks can see what the model produced.
    """
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        value = None
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}


def _stop_reason(finish_reason: Any, *, has_tool_calls: bool) -> str:
    reason = _FINISH_TO_STOP.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    # Some backends end a tool-calling answer with "stop"; Anthropic always says tool_use then.
    return "tool_use" if has_tool_calls and reason == "end_turn" else reason


def _matched_stop(choice: dict[str, Any], request: dict[str, Any]) -> str | None:
    """The stop sequence that ended the answer, when the backend says (vLLM's `stop_reason`);
    plain chat does not, and the answer then reads end_turn."""
    matched = choice.get("stop_reason")
    stops = request.get("stop_sequences")
    if choice.get("finish_reason") == "stop" and isinstance(matched, str) and isinstance(stops, list) and matched in stops:
        return matched
    return None


def anthropic_usage(usage: Any) -> dict[str, int]:
    """Chat's prompt_tokens includes cached tokens; Anthropic's input_tokens excludes cache reads
    (the inverse of the Anthropic adapter's to_usage). Cache writes are not reported by chat."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    prompt = prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else 0
    cached = cached if isinstance(cached, int) and not isinstance(cached, bool) and 0 <= cached <= prompt else 0
    return {
        "input_tokens": prompt - cached,
        "output_tokens": completion if isinstance(completion, int) and not isinstance(completion, bool) else 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def to_message(completion: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = _dict(choice.get("message"))
    text = _text_of(message.get("content"))
    refused = False
    if not text and isinstance(message.get("refusal"), str) and message["refusal"]:
        text, refused = message["refusal"], True
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    listed = message.get("tool_calls")
    calls = [call for call in listed if isinstance(call, dict)] if isinstance(listed, list) else []
    for call in calls:
        function = _dict(call.get("function"))
        name, call_id = function.get("name"), call.get("id")
        content.append(
            {
                "type": "tool_use",
                "id": call_id if isinstance(call_id, str) and call_id else _tool_use_id(),
                "name": name if isinstance(name, str) else "",
                "input": _tool_input(function.get("arguments")),
            }
        )
    stop_sequence = _matched_stop(choice, request)
    if stop_sequence is not None:
        stop_reason = "stop_sequence"
    elif refused:
        stop_reason = "refusal"
    else:
        stop_reason = _stop_reason(choice.get("finish_reason"), has_tool_calls=bool(calls))
    model = completion.get("model") if isinstance(completion.get("model"), str) else request.get("model")
    return {
        "id": _message_id(),
        "type": "message",
        "role": "assistant",
        "model": model if isinstance(model, str) else "",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": anthropic_usage(completion.get("usage")),
    }


# ── errors ──────────────────────────────────────────────────────────────────────────────


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_body(exc: GatewayError, *, request_id: str | None = None) -> dict[str, Any]:
    # Anthropic's error object has no `code`: the gateway's code ends the message and rides in
    # details.error_code, where the SDK reads a cause (an unknown one means "the bare type").
    message = f"{exc.message} ({exc.code})" if exc.code else exc.message
    error: dict[str, Any] = {"type": error_type(exc.status), "message": message}
    if exc.code:
        error["details"] = {"error_code": exc.code}
    body: dict[str, Any] = {"type": "error", "error": error}
    if request_id:
        body["request_id"] = request_id
    return body


# ── streaming ───────────────────────────────────────────────────────────────────────────


class MessagesStreamEncoder(StreamEncoder):
    """Canonical chunks in, Anthropic's event stream out (one instance per stream).

    One content block is open at a time, as Anthropic sends them: text opens a text block,
    a new tool call closes it and opens a tool_use block. The real usage only arrives with
    the last chat chunk, so message_start says 0 input tokens and message_delta carries the
    real figures (MessageDeltaUsage has input_tokens; the SDK's accumulator takes them).
    A backend that interleaves the argument fragments of parallel tool calls gets its late
    fragments sent on the earlier block's index, which the SDK accumulates by index.
    """

    def __init__(self, *, request: dict[str, Any], model: str, request_id: str) -> None:
        self.request = request
        self.model = model
        self.request_id = request_id
        self.message_id = _message_id()
        self.started = False
        self.ended = False
        self.next_index = 0
        self.open: tuple[int, str] | None = None  # (block index, block type)
        self.tools: dict[int, int] = {}  # chat tool_calls index -> block index
        self.finish_reason: Any = None
        self.stop_sequence: str | None = None
        self.refused = False
        self.usage: Any = None

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [
            sse({"type": "message_start", "message": message}, event="message_start"),
            sse({"type": "ping"}, event="ping"),
        ]

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        index, _ = self.open
        self.open = None
        return [sse({"type": "content_block_stop", "index": index}, event="content_block_stop")]

    def _open(self, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        index = self.next_index
        self.next_index += 1
        self.open = (index, block["type"])
        out.append(sse({"type": "content_block_start", "index": index, "content_block": block}, event="content_block_start"))
        return out

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return sse({"type": "content_block_delta", "index": index, "delta": delta}, event="content_block_delta")

    def _text(self, text: str) -> list[bytes]:
        out = [] if self.open is not None and self.open[1] == "text" else self._open({"type": "text", "text": ""})
        assert self.open is not None
        out.append(self._delta(self.open[0], {"type": "text_delta", "text": text}))
        return out

    def _tool_call(self, position: int, call: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        index = call.get("index")
        key = index if isinstance(index, int) else position
        function = _dict(call.get("function"))
        if key not in self.tools:
            call_id, name = call.get("id"), function.get("name")
            block = {
                "type": "tool_use",
                "id": call_id if isinstance(call_id, str) and call_id else _tool_use_id(),
                "name": name if isinstance(name, str) else "",
                "input": {},
            }
            out.extend(self._open(block))
            self.tools[key] = self.next_index - 1
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out.append(self._delta(self.tools[key], {"type": "input_json_delta", "partial_json": arguments}))
        return out

    def chunk(self, chunk: dict[str, Any]) -> Iterable[bytes]:
        if self.ended:
            return []
        out = self._start()
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # the gateway asks for one choice; Anthropic has no others
            delta = _dict(choice.get("delta"))
            for key in ("content", "refusal"):
                if isinstance(delta.get(key), str) and delta[key]:
                    self.refused = self.refused or key == "refusal"
                    out.extend(self._text(delta[key]))
            calls = delta.get("tool_calls")
            for position, call in enumerate(calls if isinstance(calls, list) else []):
                if isinstance(call, dict):
                    out.extend(self._tool_call(position, call))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                self.stop_sequence = _matched_stop(choice, self.request)
        return out

    def finish(self) -> Iterable[bytes]:
        if self.ended:
            return []
        self.ended = True
        out = [*self._start(), *self._close()]
        if self.stop_sequence is not None:
            stop_reason = "stop_sequence"
        elif self.refused and not self.tools and self.finish_reason in (None, "stop", "content_filter"):
            stop_reason = "refusal"
        else:
            stop_reason = _stop_reason(self.finish_reason, has_tool_calls=bool(self.tools))
        usage: dict[str, Any] = anthropic_usage(self.usage) if isinstance(self.usage, dict) else {"output_tokens": 0}
        delta = {"stop_reason": stop_reason, "stop_sequence": self.stop_sequence}
        out.append(sse({"type": "message_delta", "delta": delta, "usage": usage}, event="message_delta"))
        out.append(sse({"type": "message_stop"}, event="message_stop"))
        return out

    def error(self, exc: GatewayError) -> Iterable[bytes]:
        if self.ended:
            return []
        self.ended = True
        # Anthropic's mid-stream error event; the SDK raises on it. Nothing follows it.
        return [sse(error_body(exc, request_id=self.request_id), event="error")]


# ── the door ────────────────────────────────────────────────────────────────────────────


class MessagesWire(Wire):
    endpoint = "messages"

    def to_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return to_chat(body)

    def from_chat(self, completion: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        return to_message(completion, request=request)

    def encoder(self, *, request: dict[str, Any], model: str, request_id: str) -> StreamEncoder:
        return MessagesStreamEncoder(request=request, model=model, request_id=request_id)

    def error_response(self, exc: GatewayError, *, request_id: str) -> HttpResponse:
        response = JsonResponse(error_body(exc, request_id=request_id), status=exc.status)
        for name, value in exc.headers.items():
            response[name] = value
        if request_id:
            # Anthropic's header (the SDK exposes it as exc.request_id) and the gateway's own.
            response["request-id"] = request_id
            response["x-request-id"] = request_id
        return response
