"""Google's Gemini API (generativelanguage, v1beta) behind the OpenAI chat and embeddings interface.

Request: system/developer messages (the bound prompt first) become `systemInstruction`; the
rest become `contents` with roles user/model; tool calls and results become functionCall /
functionResponse parts; sampling options go into `generationConfig`. A blocked prompt becomes
a 400 `content_filter` error, a blocked answer `finish_reason: content_filter`.

Checked against the generateContent / streamGenerateContent / embedContent / batchEmbedContents
references and the official SDK (google-genai: GenerateContentResponse, FinishReason,
BlockedReason, UsageMetadata, and its request converters for the Gemini Developer API).
"""

from __future__ import annotations

import array
import base64
import json
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import httpx

from .base import Operation, UpstreamError
from .http import HttpAdapter
from .openai_shapes import (
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

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"

# Everything Gemini withholds for policy reasons, from FinishReason; the rest read as a stop.
FILTERED = {
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
    "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
}  # fmt: skip

TOOL_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}

# Gemini 3 models reject a replayed functionCall without the thoughtSignature they attached to
# it. OpenAI clients only echo the tool call id back, so the signature travels inside the id,
# after this mark (which is in neither base64 alphabet).
SIGNATURE_MARK = "~"


def _call_id(native_id: str | None, signature: str | None) -> str:
    call_id = native_id or f"call_{uuid.uuid4().hex[:24]}"
    return f"{call_id}{SIGNATURE_MARK}{signature}" if signature else call_id


def _signature(call_id: str) -> str | None:
    _, mark, signature = call_id.partition(SIGNATURE_MARK)
    return signature if mark and signature else None


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        text = text_of(content)
        return [{"text": text}] if text else []
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind in ("image_url", "file"):
            source = part.get("image_url") if kind == "image_url" else part.get("file")
            url = source.get("url" if kind == "image_url" else "file_data", "") if isinstance(source, dict) else str(source or "")
            inline = parse_data_url(url)
            if inline is None:
                # Fetching the URL ourselves would make the gateway a proxy to anywhere.
                raise unsupported("Gemini backends take images and files inline, as base64 data URLs")
            parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
        else:
            raise unsupported(f"content parts of type '{kind}' cannot be sent to a Gemini backend")
    return parts


def _model_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    text = text_of(message.get("content"))
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    for call in message.get("tool_calls") or []:
        name = (call.get("function") or {}).get("name", "")
        part: dict[str, Any] = {"functionCall": {"name": name, "args": tool_arguments(call)}}
        if (signature := _signature(str(call.get("id", "")))) is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(message: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    call_id = str(message.get("tool_call_id", ""))
    if call_id not in names:
        raise unsupported(f"tool message answers tool_call_id '{call_id}', which no earlier assistant message made")
    text = text_of(message.get("content"))
    try:
        result = json.loads(text)
    except ValueError:
        result = None
    # `response` must be a JSON object; anything else is wrapped, as Google's examples do.
    return {"functionResponse": {"name": names[call_id], "response": result if isinstance(result, dict) else {"result": text}}}


def _conversation(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents), consecutive same-role turns merged."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name: Gemini matches results by name
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            text = text_of(message.get("content"))
            if text:
                system.append({"text": text})
            continue
        if role == "user":
            native_role, parts = "user", _user_parts(message.get("content"))
        elif role == "assistant":
            for call in message.get("tool_calls") or []:
                names[str(call.get("id", ""))] = (call.get("function") or {}).get("name", "")
            native_role, parts = "model", _model_parts(message)
        elif role == "tool":
            native_role, parts = "user", [_function_response(message, names)]
        else:
            raise unsupported(f"messages with role '{role}' cannot be sent to a Gemini backend")
        if not parts:
            continue
        if contents and contents[-1]["role"] == native_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": native_role, "parts": parts})
    return system, contents


def _tool_config(body: dict[str, Any]) -> dict[str, Any] | None:
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if isinstance(choice, str) and choice in TOOL_MODES:
        return {"functionCallingConfig": {"mode": TOOL_MODES[choice]}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name", "")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    raise unsupported("tool_choice must be 'auto', 'none', 'required' or a function")


def _generation_config(body: dict[str, Any], max_tokens: int | None) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    for openai_name, native_name in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("seed", "seed"),
    ):
        if body.get(openai_name) is not None:
            config[native_name] = body[openai_name]
    if stop := stop_sequences(body):
        config["stopSequences"] = stop
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    elif response_format.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = (response_format.get("json_schema") or {}).get("schema") or {}
    elif response_format.get("type") not in (None, "text"):
        raise unsupported(f"response_format '{response_format.get('type')}' is not supported by Gemini backends")
    return config


def to_generate_request(body: dict[str, Any], *, max_tokens: int | None, safety_settings: Any = None) -> dict[str, Any]:
    reject_unsupported(body, "Gemini")
    system, contents = _conversation(body.get("messages") or [])
    payload: dict[str, Any] = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": system}
    if config := _generation_config(body, max_tokens):
        payload["generationConfig"] = config
    declarations = [
        {
            "name": function.get("name", ""),
            **({"description": function["description"]} if function.get("description") else {}),
            # JSON Schema as clients write it; `parameters` would want Google's OpenAPI subset.
            **({"parametersJsonSchema": function["parameters"]} if function.get("parameters") else {}),
        }
        for function in function_tools(body)
    ]
    if declarations:
        payload["tools"] = [{"functionDeclarations": declarations}]
        if (tool_config := _tool_config(body)) is not None:
            payload["toolConfig"] = tool_config
    if safety_settings:
        payload["safetySettings"] = safety_settings
    return payload


def to_usage(meta: dict[str, Any]) -> dict[str, Any]:
    """Thinking tokens are billed as output, as OpenAI's reasoning tokens are counted in
    completion_tokens; what Google's built-in tools added to the prompt is billed as input."""
    thoughts = meta.get("thoughtsTokenCount") or 0
    return usage(
        (meta.get("promptTokenCount") or 0) + (meta.get("toolUsePromptTokenCount") or 0),
        (meta.get("candidatesTokenCount") or 0) + thoughts,
        cached=meta.get("cachedContentTokenCount") or 0,
        reasoning=thoughts,
    )


def finish_reason(native: str | None, has_tool_calls: bool) -> str:
    if native == "MAX_TOKENS":
        return "length"
    if native in FILTERED:
        return "content_filter"
    return "tool_calls" if has_tool_calls else "stop"


def prompt_blocked(response: dict[str, Any]) -> UpstreamError | None:
    reason = (response.get("promptFeedback") or {}).get("blockReason")
    if not reason:
        return None
    return UpstreamError(f"Gemini refused the prompt under its content policy ({reason})", status=400, code="content_filter")


def read_parts(parts: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Answer text and OpenAI tool calls of a candidate's parts (thought summaries left out)."""
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts:
        if part.get("thought"):
            continue
        if isinstance(part.get("functionCall"), dict):
            call = part["functionCall"]
            call_id = _call_id(call.get("id"), part.get("thoughtSignature"))
            calls.append(tool_call(call_id, call.get("name", ""), call.get("args") or {}))
        elif part.get("text"):
            text.append(part["text"])
    return "".join(text), calls


def to_completion(response: dict[str, Any], model: str) -> dict[str, Any]:
    candidates = response.get("candidates") or []
    if not candidates:
        raise prompt_blocked(response) or UpstreamError("Gemini returned no candidates", status=502)
    candidate = candidates[0]
    text, calls = read_parts((candidate.get("content") or {}).get("parts") or [])
    return completion(
        response_id=response.get("responseId") or f"chatcmpl-{uuid.uuid4().hex[:24]}",
        model=response.get("modelVersion") or model,
        text=text,
        tool_calls=calls,
        finish_reason=finish_reason(candidate.get("finishReason"), bool(calls)),
        usage=to_usage(response.get("usageMetadata") or {}),
    )


def stream_error(error: dict[str, Any]) -> UpstreamError:
    """An error object sent after the 200, in the same shape as an HTTP error body."""
    code = error.get("code")
    status, retryable = {429: (429, True), 503: (503, True), 504: (504, True), 400: (400, False)}.get(
        code if isinstance(code, int) else 0, (502, True)
    )
    message = f"Gemini reported {error.get('status') or code} mid-stream: {error.get('message', '')}"
    return UpstreamError(message, status=status, retryable=retryable, upstream_status=code if isinstance(code, int) else None)


class StreamTranslator:
    """Gemini stream responses in, OpenAI chunks out. Each event is a whole
    GenerateContentResponse holding the next parts; the last one has the finishReason."""

    def __init__(self, model: str) -> None:
        self.out = ChunkWriter(response_id=f"chatcmpl-{uuid.uuid4().hex[:24]}", model=model)
        self.meta: dict[str, Any] = {}
        self.tool_calls = 0
        self.native_finish: str | None = None

    @property
    def done(self) -> bool:
        return False  # Gemini marks no end: the stream's last event has the finish reason

    def feed(self, event: SSEvent) -> list[dict[str, Any]]:
        response = event_json(event, "Gemini")
        if isinstance(response.get("error"), dict):
            raise stream_error(response["error"])
        if response.get("responseId") and not self.out.started:
            self.out.id = response["responseId"]
        self.out.model = response.get("modelVersion") or self.out.model
        self.meta.update(response.get("usageMetadata") or {})
        candidates = response.get("candidates") or []
        if not candidates:
            if (blocked := prompt_blocked(response)) is not None:
                raise blocked
            return []
        candidate = candidates[0]
        chunks: list[dict[str, Any]] = []
        text, calls = read_parts((candidate.get("content") or {}).get("parts") or [])
        if text:
            chunks.append(self.out.text(text))
        for call in calls:
            function = call["function"]
            chunks.append(self.out.tool_call_start(self.tool_calls, call["id"], function["name"], function["arguments"]))
            self.tool_calls += 1
        self.native_finish = candidate.get("finishReason") or self.native_finish
        return chunks

    def close(self) -> list[dict[str, Any]]:
        if self.native_finish is None:
            raise UpstreamError(
                "Gemini ended the stream without a finish reason", status=502, retryable=True, code="upstream_stream_broken"
            )
        reason = finish_reason(self.native_finish, self.tool_calls > 0)
        return [self.out.finish(reason), self.out.usage(to_usage(self.meta))]


def _embedding_inputs(value: Any) -> tuple[list[str], bool]:
    """(texts, whether a single string was sent)."""
    if isinstance(value, str):
        return [value], True
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value, False
    raise unsupported("Gemini embedding backends take a string or a list of strings, not token ids")


class GeminiAdapter(HttpAdapter):
    kind = "gemini"
    label = "Gemini"
    operations = frozenset({Operation.CHAT, Operation.CHAT_STREAM, Operation.EMBEDDINGS})

    def url(self, model: str, method: str) -> str:
        base = (self.backend.base_url or DEFAULT_BASE_URL).rstrip("/")
        return f"{base}/models/{model.removeprefix('models/')}:{method}"

    def headers(self) -> dict[str, str]:
        credential = self.backend.credential()
        return {"x-goog-api-key": credential} if credential else {}

    def raise_for_status(self, response: httpx.Response, raw: bytes) -> NoReturn:
        # Gemini answers a wrong key with 400 INVALID_ARGUMENT, which would otherwise reach the
        # client as its own mistake; it is the operator's.
        if response.status_code == 400 and b"API_KEY_INVALID" in raw:
            raise UpstreamError(
                "Gemini rejected the gateway's credentials (400)", status=502, upstream_status=400, code="upstream_auth_failed"
            )
        super().raise_for_status(response, raw)

    def payload(self, body: dict[str, Any]) -> dict[str, Any]:
        return to_generate_request(
            body,
            max_tokens=max_output_tokens(body, self.backend),
            safety_settings=self.backend.options.get("safety_settings"),
        )

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        model = body["model"]
        response = await self.post_json(self.url(model, "generateContent"), self.payload(body), self.headers())
        return to_completion(response, model)

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        model = body["model"]
        url = self.url(model, "streamGenerateContent") + "?alt=sse"
        return self.stream(url, self.payload(body), self.headers(), StreamTranslator(model=model))

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        model = str(body["model"]).removeprefix("models/")
        texts, single = _embedding_inputs(body.get("input"))
        extra: dict[str, Any] = {}
        if body.get("dimensions"):
            extra["outputDimensionality"] = body["dimensions"]
        if self.backend.options.get("embedding_task_type"):
            extra["taskType"] = self.backend.options["embedding_task_type"]
        if single:
            payload: dict[str, Any] = {"content": {"parts": [{"text": texts[0]}]}, **extra}
            response = await self.post_json(self.url(model, "embedContent"), payload, self.headers())
            vectors = [(response.get("embedding") or {}).get("values") or []]
        else:
            requests = [{"model": f"models/{model}", "content": {"parts": [{"text": text}]}, **extra} for text in texts]
            response = await self.post_json(self.url(model, "batchEmbedContents"), {"requests": requests}, self.headers())
            vectors = [item.get("values") or [] for item in response.get("embeddings") or []]
        if len(vectors) != len(texts) or not all(vectors):
            raise UpstreamError("Gemini returned a different number of embeddings than inputs", status=502)
        # The Gemini API reports no token count for embeddings on most models; a 4-characters-
        # per-token estimate keeps cost accounting close rather than at zero.
        estimate = sum(max(1, math.ceil(len(text) / 4)) for text in texts)
        tokens = (response.get("usageMetadata") or {}).get("promptTokenCount") or estimate
        as_base64 = body.get("encoding_format") == "base64"
        return {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": index,
                    "embedding": base64.b64encode(array.array("f", vector).tobytes()).decode() if as_base64 else vector,
                }
                for index, vector in enumerate(vectors)
            ],
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
