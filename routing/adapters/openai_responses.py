"""OpenAI's Responses API (`POST /responses`) behind the canonical chat interface.

For the models OpenAI serves only there (codex and pro models) and the reasoning models it
recommends it for. Request: the chat messages become `input` items in the same order,
tool calls and results become `function_call` / `function_call_output` items, and the
sampling options their Responses names; `store` is always false, since the gateway keeps no
state at the provider either. Response: a `Response` becomes a `chat.completion`, and the
Responses event stream becomes `chat.completion.chunk` dicts.

Checked against the official SDK's types (openai.types.responses: ResponseCreateParams,
Response, ResponseStreamEvent, ResponseError, ResponseUsage).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .base import UpstreamError
from .http import HttpAdapter
from .openai_compat import AzureCredentials
from .openai_shapes import (
    ChunkWriter,
    completion,
    function_tools,
    max_output_tokens,
    reject_unsupported,
    text_of,
    tool_call,
    unsupported,
    usage,
)
from .sse import SSEvent, event_json

DEFAULT_BASE_URL = "https://api.openai.com/v1"

# Incomplete reasons (Response.incomplete_details.reason) as chat finish reasons.
INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}

# Error codes of a `response.failed` / `error` event, which arrive after a 200: status, retryable.
STREAM_ERRORS = {
    "server_error": (502, True),
    "rate_limit_exceeded": (429, True),
    "vector_store_timeout": (504, True),
}
# Codes that mean OpenAI's policies refused the prompt (kept apart from a malformed request).
POLICY_CODES = frozenset({"bio_policy", "cyber_policy", "image_content_policy_violation", "misalignment_policy_violation"})

# Chat options with no Responses equivalent that would change the answer: refused rather than
# silently lost. (`seed` is only a best-effort hint and `stream_options` the gateway's own
# accounting request; both are left out.)
NO_EQUIVALENT = {
    "stop": "the Responses API has no stop sequences",
    "logit_bias": "the Responses API takes no logit_bias",
    "presence_penalty": "the Responses API has no presence_penalty",
    "frequency_penalty": "the Responses API has no frequency_penalty",
    "prediction": "the Responses API takes no predicted outputs",
    "audio": "the Responses API produces no audio",
    "web_search_options": "hosted web search is not available through this backend",
}

IMAGE_DETAILS = frozenset({"low", "high", "auto"})


# ── request ────────────────────────────────────────────────────────────────────────────


def _user_content(content: Any) -> str | list[dict[str, Any]]:
    if not isinstance(content, list):
        return text_of(content)
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": "input_text", "text": str(part.get("text") or "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url", "") if isinstance(image, dict) else str(image or "")
            detail = image.get("detail") if isinstance(image, dict) else None
            # The SDK types require a detail; chat's default is auto.
            parts.append({"type": "input_image", "image_url": url, "detail": detail if detail in IMAGE_DETAILS else "auto"})
        elif kind == "file":
            file = part.get("file") or {}
            if not file.get("file_data"):
                raise unsupported("file parts must carry inline 'file_data' for a Responses backend")
            parts.append(
                {
                    "type": "input_file",
                    "file_data": file["file_data"],
                    **({"filename": file["filename"]} if file.get("filename") else {}),
                }
            )
        else:
            raise unsupported(f"content parts of type '{kind}' cannot be sent to an OpenAI Responses backend")
    return parts


def _function_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        raise unsupported(f"tool call '{function.get('name', '')}' arguments must be a JSON string")
    return {"type": "function_call", "call_id": call.get("id", ""), "name": function.get("name", ""), "arguments": arguments}


def to_input(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as input items, in the order the chat messages came.

    System and developer messages stay where they are, as `developer` messages, rather than
    moving into `instructions`: OpenAI would put instructions first too, but merging several
    of them (the bound prompt, then the client's own) into one string would blur the line
    between them, and the order guarantee the gateway gives — bound prompt first, the client's
    instructions after it — is then carried by the items themselves.
    """
    items: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            items.append({"type": "message", "role": "developer", "content": text_of(message.get("content"))})
        elif role == "user":
            items.append({"type": "message", "role": "user", "content": _user_content(message.get("content"))})
        elif role == "assistant":
            # An earlier answer as an easy input message: the SDK's output-message form needs
            # the stored item's id, and with store: false there is no stored item to name.
            text = text_of(message.get("content"))
            if text:
                items.append({"type": "message", "role": "assistant", "content": text})
            items.extend(_function_call(call) for call in message.get("tool_calls") or [])
        elif role == "tool":
            output = text_of(message.get("content"))
            items.append({"type": "function_call_output", "call_id": message.get("tool_call_id", ""), "output": output})
        else:
            raise unsupported(f"messages with role '{role}' cannot be sent to an OpenAI Responses backend")
    return items


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "name": function.get("name", ""),
            **({"description": function["description"]} if function.get("description") else {}),
            "parameters": function.get("parameters") or {"type": "object", "properties": {}},
            # Responses function tools are strict unless told otherwise; chat tools are not, and
            # strict mode refuses ordinary schemas (optional properties, no additionalProperties).
            "strict": bool(function.get("strict", False)),
        }
        for function in function_tools(body)
    ]


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "name": (choice.get("function") or {}).get("name", "")}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        tools = [
            {"type": "function", "name": (tool.get("function") or {}).get("name", "")}
            for tool in allowed.get("tools") or []
            if isinstance(tool, dict) and tool.get("type") == "function"
        ]
        return {"type": "allowed_tools", "mode": allowed.get("mode", "auto"), "tools": tools}
    raise unsupported("tool_choice must be 'auto', 'none', 'required', a function or allowed function tools")


def _text_format(response_format: dict[str, Any]) -> dict[str, Any]:
    kind = response_format.get("type")
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        form: dict[str, Any] = {"type": "json_schema", "name": spec.get("name", "response"), "schema": spec.get("schema") or {}}
        for name in ("description", "strict"):
            if spec.get(name) is not None:
                form[name] = spec[name]
        return form
    raise unsupported("response_format must be 'text', 'json_object' or 'json_schema'")


def to_responses_request(body: dict[str, Any], *, max_tokens: int | None) -> dict[str, Any]:
    reject_unsupported(body, "OpenAI Responses")
    for name, why in NO_EQUIVALENT.items():
        if body.get(name) not in (None, 0, [], {}):
            raise unsupported(f"'{name}' cannot be sent to this backend: {why}")
    payload: dict[str, Any] = {
        "model": body["model"],
        "input": to_input(body.get("messages") or []),
        # Nothing is kept at the provider (OpenAI's default is to store for 30 days).
        "store": False,
    }
    if max_tokens is not None:
        payload["max_output_tokens"] = max_tokens
    for name in ("temperature", "top_p", "service_tier", "prompt_cache_key", "safety_identifier"):
        if body.get(name) is not None:
            payload[name] = body[name]
    if isinstance(body.get("user"), str) and body["user"] and "safety_identifier" not in payload:
        # Chat's end-user field; the Responses API's name for its abuse-detection role.
        payload["safety_identifier"] = body["user"]
    if tools := _tools(body):
        payload["tools"] = tools
        if body.get("tool_choice") is not None:
            payload["tool_choice"] = _tool_choice(body["tool_choice"])
        if body.get("parallel_tool_calls") is not None:
            payload["parallel_tool_calls"] = bool(body["parallel_tool_calls"])
    if body.get("reasoning_effort") is not None:
        payload["reasoning"] = {"effort": body["reasoning_effort"]}
    text: dict[str, Any] = {}
    if isinstance(body.get("response_format"), dict):
        text["format"] = _text_format(body["response_format"])
    if body.get("verbosity") is not None:
        text["verbosity"] = body["verbosity"]
    if text:
        payload["text"] = text
    if body.get("stream"):
        payload["stream"] = True
    return payload


# ── answer ─────────────────────────────────────────────────────────────────────────────


def to_usage(native: Any) -> dict[str, Any]:
    native = native if isinstance(native, dict) else {}
    return usage(
        native.get("input_tokens") or 0,
        native.get("output_tokens") or 0,
        cached=(native.get("input_tokens_details") or {}).get("cached_tokens") or 0,
        reasoning=(native.get("output_tokens_details") or {}).get("reasoning_tokens") or 0,
    )


def finish_reason(response: dict[str, Any], *, tool_calls: bool) -> str:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return INCOMPLETE.get(reason or "", "length")
    return "tool_calls" if tool_calls else "stop"


def error_from(error: dict[str, Any], *, where: str) -> UpstreamError:
    """An error a Response or an event reports (after a 200), by its code or type."""
    code = str(error.get("code") or error.get("type") or "")
    message = str(error.get("message") or code or "unknown error")
    detail = f"OpenAI Responses reported {code or 'an error'} {where}: {message}"
    if code in STREAM_ERRORS:
        status, retryable = STREAM_ERRORS[code]
        return UpstreamError(detail, status=status, retryable=retryable)
    if code in POLICY_CODES:
        return UpstreamError(detail, status=400, code="content_filter")
    if code.startswith("invalid") or code.startswith("image_") or code == "invalid_request_error":
        return UpstreamError(detail, status=400, code="upstream_invalid_request")
    return UpstreamError(detail, status=502)


def to_completion(response: dict[str, Any]) -> dict[str, Any]:
    if response.get("status") == "failed":
        raise error_from(response.get("error") or {}, where="in its answer")
    text, refusal, calls = [], [], []
    for item in response.get("output") or []:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    text.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusal.append(part.get("refusal") or "")
        elif kind == "function_call":
            calls.append(tool_call(item.get("call_id", ""), item.get("name", ""), item.get("arguments") or ""))
        # Dropped: reasoning items (the model's own, often encrypted, chain of thought, with no
        # place in chat completions) and hosted tool calls, which the request never enables.
    result = completion(
        response_id=response.get("id", ""),
        model=response.get("model", ""),
        text="".join(text),
        tool_calls=calls,
        finish_reason=finish_reason(response, tool_calls=bool(calls)),
        usage=to_usage(response.get("usage")),
    )
    if refusal:
        message = result["choices"][0]["message"]
        message["refusal"] = "".join(refusal)
        message["content"] = message["content"] or None
    return result


class StreamTranslator:
    """Responses stream events in, OpenAI chunks out (one instance per stream)."""

    def __init__(self, model: str) -> None:
        self.out = ChunkWriter(response_id="", model=model)
        self.tool_index: dict[int, int] = {}  # output_index -> chat tool_calls index
        self.done = False

    def feed(self, event: SSEvent) -> list[dict[str, Any]]:
        data = event_json(event, "OpenAI Responses")
        kind = data.get("type")
        if kind == "response.created":
            response = data.get("response") or {}
            self.out.id = response.get("id", "")
            self.out.model = response.get("model") or self.out.model
        elif kind == "response.output_text.delta" and data.get("delta"):
            return [self.out.text(data["delta"])]
        elif kind == "response.refusal.delta" and data.get("delta"):
            return [self.out.delta({"refusal": data["delta"]})]
        elif kind == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") == "function_call":
                index = self.tool_index[data.get("output_index", 0)] = len(self.tool_index)
                return [
                    self.out.tool_call_start(index, item.get("call_id", ""), item.get("name", ""), item.get("arguments") or "")
                ]
        elif kind == "response.function_call_arguments.delta" and data.get("delta"):
            position = self.tool_index.get(data.get("output_index", 0))
            if position is not None:
                return [self.out.tool_call_arguments(position, data["delta"])]
        elif kind in ("response.completed", "response.incomplete"):
            response = data.get("response") or {}
            self.done = True
            reason = finish_reason(response, tool_calls=bool(self.tool_index))
            return [self.out.finish(reason), self.out.usage(to_usage(response.get("usage")))]
        elif kind == "response.failed":
            raise error_from((data.get("response") or {}).get("error") or {}, where="mid-stream")
        elif kind == "error":
            # The documented event has code/message at the top; OpenAI's servers also nest them.
            nested = data.get("error")
            raise error_from(nested if isinstance(nested, dict) else data, where="mid-stream")
        # Nothing to forward: response.in_progress/queued, content_part.*, every *.done event,
        # reasoning and reasoning-summary events, annotations, and event types added later.
        return []

    def close(self) -> list[dict[str, Any]]:
        if not self.done:
            raise UpstreamError(
                "OpenAI Responses ended the stream before response.completed",
                status=502,
                retryable=True,
                code="upstream_stream_broken",
            )
        return []


# ── adapters ───────────────────────────────────────────────────────────────────────────


class OpenAIResponsesAdapter(HttpAdapter):
    """`base_url` is the API root (default https://api.openai.com/v1); the request goes to /responses."""

    kind = "openai_responses"
    label = "OpenAI Responses"

    def url(self) -> str:
        return (self.backend.base_url or DEFAULT_BASE_URL).rstrip("/") + "/responses"

    def headers(self) -> dict[str, str]:
        credential = self.backend.credential()
        return {"Authorization": f"Bearer {credential}"} if credential else {}

    def payload(self, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        return to_responses_request({**body, "stream": stream}, max_tokens=max_output_tokens(body, self.backend))

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return to_completion(await self.post_json(self.url(), self.payload(body, stream=False), self.headers()))

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        payload = self.payload(body, stream=True)
        return self.stream(self.url(), payload, self.headers(), StreamTranslator(model=body.get("model", "")))


class AzureOpenAIResponsesAdapter(AzureCredentials, OpenAIResponsesAdapter):
    """Azure OpenAI's v1 API: `{endpoint}/openai/v1/responses`, the deployment name as `model`,
    an `api-key` header (or an Entra ID bearer token from `options.entra_token_env`).

    `base_url` is the resource endpoint (https://NAME.openai.azure.com); the v1 API needs no
    api-version, but `options.api_version` (e.g. "preview") is appended when set.
    """

    kind = "azure_openai_responses"
    label = "Azure OpenAI Responses"

    def url(self) -> str:
        base = self.backend.base_url.rstrip("/")
        for suffix in ("/openai/v1", "/openai"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
                break
        version = self.backend.options.get("api_version")
        return f"{base}/openai/v1/responses" + (f"?api-version={version}" if version else "")

