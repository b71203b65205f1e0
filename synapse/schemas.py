"""Validation of OpenAI request bodies: the first problem found, as a 400 naming the field.

Hand-written rather than a serializer because it runs on every request and only has to
check shape. Fields the gateway does not know (dlp/fields.py) are refused by `check_fields`
once the route is known, since a backend may allow some extra fields by name.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from typing import Any

from dlp.fields import unknown_fields

from .errors import GatewayError, invalid_request

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal"})


# Deeper than any real request (tool schemas included); bounds every recursive walk after the
# parse (DLP, hashing, the upstream's encoder) far below Python's recursion limit.
MAX_JSON_DEPTH = 64
# Unrolled ("normal* (special normal*)*"): the plain alternation stepped one character at a
# time and took a second per 4 MB string, on the event loop; this one runs ~30x faster.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
# A \uD800-\uDFFF escape: a pair is one valid character, a lone one cannot be stored or sent.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_json(raw: bytes) -> Any:
    """Any JSON value from a request body, refused with a 400 when it is not JSON, nests deeper
    than MAX_JSON_DEPTH, or holds a lone surrogate (not Unicode: no database or upstream takes it)."""
    if not raw:
        raise invalid_request("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = json.loads(raw)
    except RecursionError as exc:
        raise _too_deep() from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_request(f"The request body is not valid JSON: {exc}", code="invalid_json") from exc
    if _depth(raw) > MAX_JSON_DEPTH:
        raise _too_deep()
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:
            raise invalid_request(
                "The request body holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), which is not Unicode.",
                code="invalid_unicode",
            ) from exc
    return body


def parse_json_object(raw: bytes) -> dict[str, Any]:
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    return body


def _depth(raw: bytes) -> int:
    """The deepest nesting of valid JSON `raw`, counted in C-speed passes (strings removed first)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _too_deep() -> GatewayError:
    return invalid_request(f"The request body nests deeper than {MAX_JSON_DEPTH} levels.", code="json_too_deep")


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise invalid_request(f"'{name}' must be a number between {low:g} and {high:g}.", param=name)


def _positive_int(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_request(f"'{name}' must be a positive integer.", param=name)


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid_request(
            "'model' is required and must be a non-empty string.",
            param="model",
            code="missing_required_parameter" if model is None else "invalid_type",
        )
    if _CONTROL.search(model):
        # NUL and other control characters name no model; PostgreSQL cannot even store a NUL.
        raise invalid_request("'model' must not contain control characters.", param="model")
    return model


def validate_chat(body: dict[str, Any]) -> str:
    """Check a chat.completions body; return the requested model."""
    model = _model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("'messages' must be a non-empty array.", param="messages")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid_request(f"'{where}' must be an object.", param=where)
        role = message.get("role")
        if role not in ROLES:
            raise invalid_request(f"'{where}.role' must be one of {', '.join(sorted(ROLES))}.", param=f"{where}.role")
        content = message.get("content")
        if content is None:
            if role != "assistant" and role != "function":
                raise invalid_request(f"'{where}.content' is required for role '{role}'.", param=f"{where}.content")
        elif isinstance(content, list):
            for part_index, part in enumerate(content):
                part_where = f"{where}.content[{part_index}]"
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise invalid_request(f"'{part_where}' must be an object with a 'type'.", param=part_where)
                if part["type"] not in PART_TYPES:
                    raise invalid_request(f"'{part_where}.type' is not a known content part type.", param=f"{part_where}.type")
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise invalid_request(f"'{part_where}.text' must be a string.", param=f"{part_where}.text")
        elif not isinstance(content, str):
            raise invalid_request(f"'{where}.content' must be a string or an array of content parts.", param=f"{where}.content")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise invalid_request(f"'{where}.tool_call_id' is required for tool messages.", param=f"{where}.tool_call_id")
        tool_calls = message.get("tool_calls")
        if tool_calls is not None and not isinstance(tool_calls, list):
            raise invalid_request(f"'{where}.tool_calls' must be an array.", param=f"{where}.tool_calls")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_request("'stream' must be a boolean.", param="stream")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise invalid_request("'stream_options' must be an object.", param="stream_options")
        if not stream:
            raise invalid_request("'stream_options' is only allowed when 'stream' is true.", param="stream_options")
    _positive_int(body, "max_tokens")
    _positive_int(body, "max_completion_tokens")
    _positive_int(body, "n")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    stop = body.get("stop")
    if (
        stop is not None
        and not isinstance(stop, str)
        and not (isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop))
    ):
        raise invalid_request("'stop' must be a string or an array of up to 4 strings.", param="stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise invalid_request("'seed' must be an integer.", param="seed")
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise invalid_request("'tools' must be an array of objects.", param="tools")
    tool_choice = body.get("tool_choice")
    if tool_choice is not None and not isinstance(tool_choice, str | dict):
        raise invalid_request("'tool_choice' must be a string or an object.", param="tool_choice")
    response_format = body.get("response_format")
    if response_format is not None and not (isinstance(response_format, dict) and isinstance(response_format.get("type"), str)):
        raise invalid_request("'response_format' must be an object with a 'type'.", param="response_format")
    return model


def validate_embeddings(body: dict[str, Any]) -> str:
    model = _model(body)
    value = body.get("input")
    valid = (isinstance(value, str) and value != "") or (
        isinstance(value, list)
        and value
        and (
            all(isinstance(v, str) for v in value)
            or all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or all(isinstance(v, list) and v and all(isinstance(t, int) for t in v) for v in value)
        )
    )
    if not valid:
        raise invalid_request(
            "'input' must be a non-empty string, an array of strings, or an array of token arrays.", param="input"
        )
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise invalid_request("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    _positive_int(body, "dimensions")
    return model


def check_fields(body: dict[str, Any], *, embeddings: bool, extra: Iterable[str] = ()) -> None:
    """Refuse a body with a field the gateway would not forward (400 naming the first one):
    an unknown field could change what the backend does (a chat template can drop the bound
    system prompt) and nothing would have scanned it for the backend's meaning."""
    unknown = unknown_fields(body, embeddings=embeddings, extra=extra)
    if unknown:
        raise invalid_request(
            f"Unrecognized request argument supplied: {unknown[0]}. The gateway forwards only the fields it knows"
            " (and those the backend's operator allows).",
            param=unknown[0],
            code="unknown_parameter",
        )


def first_error(callable_: Any, body: dict[str, Any]) -> tuple[str, GatewayError | None]:
    """Run a validator; return (model or "", the error) instead of raising, for the pipeline."""
    try:
        return callable_(body), None
    except GatewayError as exc:
        model = body.get("model")
        return (model if isinstance(model, str) else ""), exc
