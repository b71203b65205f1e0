"""OpenAI's chat shapes, read and built for the adapters that translate to another wire format.

Both directions live here so the Anthropic and Gemini adapters agree on the details clients
notice: ids, `created`, the assistant role on the first chunk, `content: null` beside tool
calls, and a `usage` whose total is always prompt + completion.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from .base import BackendConfig, UpstreamError

DEFAULT_MAX_TOKENS = 4096

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)$", re.DOTALL)


def unsupported(message: str) -> UpstreamError:
    """A request this backend cannot express: the client must change it, retrying cannot help."""
    return UpstreamError(message, status=400, code="unsupported_parameter")


def text_of(content: Any) -> str:
    """The text of a message `content`: a string, or the text/refusal parts of a list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or part.get("refusal") or "")
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "refusal")
        )
    raise unsupported("message content must be a string or a list of content parts")


def parse_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 payload) of a `data:` URL, or None for any other URL."""
    match = _DATA_URL.match(url)
    return (match["mime"].lower(), match["data"]) if match else None


def tool_arguments(call: dict[str, Any]) -> dict[str, Any]:
    """The JSON object in an assistant tool call's `arguments` string (both natives want an object)."""
    function = call.get("function") or {}
    raw = function.get("arguments") or "{}"
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise unsupported(f"tool call '{function.get('name', '')}' has arguments that are not valid JSON") from exc
    if not isinstance(value, dict):
        raise unsupported(f"tool call '{function.get('name', '')}' arguments must be a JSON object")
    return value


def function_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `function` objects of the request's tools; other tool types have no native equivalent."""
    functions = []
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise unsupported("only tools of type 'function' can be sent to this backend")
        functions.append(tool["function"])
    return functions


def max_output_tokens(body: dict[str, Any], backend: BackendConfig) -> int | None:
    """The client's limit, else the backend's configured default (None when neither is set)."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    default = backend.options.get("default_max_tokens")
    return int(default) if default else None


def stop_sequences(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else [str(item) for item in stop]


def reject_unsupported(body: dict[str, Any], provider: str) -> None:
    """Options whose absence the client would not notice otherwise; better a clear 400."""
    if body.get("n") not in (None, 1):
        raise unsupported(f"{provider} backends return one choice per request; 'n' must be 1")
    if body.get("logprobs"):
        raise unsupported(f"{provider} backends do not return log probabilities")
    modalities = body.get("modalities")
    if modalities and any(modality != "text" for modality in modalities):
        raise unsupported(f"{provider} backends only produce text through this gateway")


def usage(prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        result["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning:
        result["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return result


def tool_call(call_id: str, name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def completion(
    *, response_id: str, model: str, text: str, tool_calls: list[dict[str, Any]], finish_reason: str, usage: dict[str, Any]
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        # OpenAI sends null rather than "" when the answer is only tool calls; SDKs rely on it.
        "content": text if text or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage,
    }


class ChunkWriter:
    """Builds `chat.completion.chunk` dicts for one streamed answer.

    The assistant role rides on the first chunk that carries anything, not on a chunk of its
    own: until then nothing has been yielded, so a failure before the first token (a blocked
    prompt, an overloaded error event) can still be retried or failed over by the caller.
    """

    def __init__(self, *, response_id: str, model: str) -> None:
        self.id = response_id
        self.model = model
        self.created = int(time.time())
        self.started = False

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        if not self.started:
            delta = {"role": "assistant", **({"content": ""} if not delta else {}), **delta}
            self.started = True
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}])

    def text(self, text: str) -> dict[str, Any]:
        return self.delta({"content": text})

    def tool_call_start(self, index: int, call_id: str, name: str, arguments: str = "") -> dict[str, Any]:
        call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        return self.delta({"tool_calls": [call]})

    def tool_call_arguments(self, index: int, fragment: str) -> dict[str, Any]:
        return self.delta({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})

    def finish(self, finish_reason: str) -> dict[str, Any]:
        return self.delta({}, finish_reason)

    def usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {**self._chunk([]), "usage": usage}
