"""Anthropic Messages request -> canonical chat body, for the Messages door (`messages.py`).

Only the fields listed here pass; anything else is a 400 naming it — a governance gateway
forwards what it has checked, nothing else. Every error is a `GatewayError` naming the field
(`messages[1].content[0].source.media_type`). Checked against the official SDK's
MessageCreateParams and MessageCountTokensParams (anthropic 2.15).

    model, max_tokens (required, >= 1)  -> model, max_tokens (0, Anthropic's cache pre-warm, is refused)
    system (string or text blocks)      -> one system message before the client's messages
    messages[].role user/assistant/system
        text                            -> text part (cache_control, citations dropped)
        image base64 / url              -> image_url (data URL / URL); a Files API file_id is refused
        document base64 PDF / text      -> file part (data URL) / text part; other sources refused
        tool_use (assistant)            -> assistant tool_calls, arguments = compact JSON of input
        tool_result (user)              -> a tool message, placed before the rest of that user turn
        thinking, redacted_thinking     -> dropped (assistant history only)
        anything else                   -> 400 unsupported_content
    stop_sequences (up to 4)            -> stop
    temperature (0-1), top_p            -> temperature, top_p
    stream                              -> stream
    metadata.user_id                    -> user
    tools (client tools)                -> function tools; server tools -> 400 unsupported_tool
    tool_choice auto/any/tool/none      -> auto/required/function/none (+ parallel_tool_calls false)
    output_config.format json_schema    -> response_format json_schema
    dropped (they tune speed, cost or sampling; the answer stays a valid answer without them):
        top_k, thinking, output_config.effort, cache_control, service_tier, speed, diagnostics
    refused (400 unsupported_parameter: server-side state, execution or placement the gateway owns):
        container, mcp_servers, context_management, inference_geo, user_profile_id, workspace_id
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from synapse.errors import GatewayError, invalid_request

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
MAX_STOP_SEQUENCES = 4  # chat's limit, which every backend behind the gateway accepts

# Fields of MessageCreateParams the gateway reads and translates.
_CREATE_FIELDS = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "stop_sequences",
        "temperature",
        "top_p",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "output_config",
        # Accepted and dropped (see _drop_checked).
        "top_k",
        "thinking",
        "cache_control",
        "service_tier",
        "speed",
        "diagnostics",
    }
)
# MessageCountTokensParams: no max_tokens, sampling, stream or metadata.
_COUNT_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "output_config", "thinking", "cache_control", "speed"}
)

_REFUSED_FIELDS = {
    "container": "code-execution containers are server-side state and built-in server tools are not allowed",
    "mcp_servers": "the gateway governs MCP itself; connect MCP tools through the gateway, not through the model",
    "context_management": "server-side context editing is not available; send the context you want the model to see",
    "inference_geo": "the gateway chooses where requests are served (by the API key's data classification)",
    "user_profile_id": "the gateway attributes every request to its API key",
    "workspace_id": "the gateway attributes every request to its API key",
}


# ── small readers: each names the field it rejects ─────────────────────────────────────


def _fail(message: str, where: str, code: str = "invalid_value") -> GatewayError:
    return invalid_request(message, param=where, code=code)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(f"'{where}' must be an object.", where, "invalid_type")
    return value


def _string(value: Any, where: str, *, non_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _fail(f"'{where}' must be a string.", where, "invalid_type")
    if non_empty and not value:
        raise _fail(f"'{where}' must not be empty.", where)
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(f"'{where}' must be a boolean.", where, "invalid_type")
    return value


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _fail(f"'{where}' must be a number between {low:g} and {high:g}.", where)
    return value


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(f"'{where}' must be a positive integer.", where)
    return value


def _one_of(value: Any, where: str, allowed: Iterable[str | None]) -> Any:
    options = tuple(allowed)
    if value not in options or isinstance(value, bool):
        named = ", ".join(f"'{option}'" if option is not None else "null" for option in options)
        raise _fail(f"'{where}' must be one of {named}.", where)
    return value


def _known(obj: dict[str, Any], where: str, allowed: frozenset[str] | set[str]) -> None:
    for key in obj:
        if key not in allowed:
            name = f"{where}.{key}" if where else key
            raise _fail(f"'{name}' is not a field this gateway accepts here.", name, "unknown_parameter")


def _required(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj or obj[key] is None:
        name = f"{where}.{key}" if where else key
        raise _fail(f"'{name}' is required.", name, "missing_required_parameter")
    return obj[key]


def _block(value: Any, where: str) -> tuple[dict[str, Any], str]:
    block = _object(value, where)
    kind = block.get("type")
    if not isinstance(kind, str):
        raise _fail(f"'{where}.type' is required and must be a string.", f"{where}.type", "invalid_type")
    return block, kind


def _blocks(content: Any, where: str) -> list[tuple[str, dict[str, Any], str]]:
    """(path, block, type) for each block; a string is shorthand for one text block."""
    if isinstance(content, str):
        return [(where, {"type": "text", "text": content}, "text")]
    if not isinstance(content, list):
        raise _fail(f"'{where}' must be a string or an array of content blocks.", where, "invalid_type")
    result = []
    for index, value in enumerate(content):
        path = f"{where}[{index}]"
        block, kind = _block(value, path)
        result.append((path, block, kind))
    return result


def _unsupported_block(kind: str, where: str, role: str) -> GatewayError:
    return _fail(
        f"'{where}.type' is '{kind}': this content block cannot be sent in a {role} message through the gateway.",
        f"{where}.type",
        "unsupported_content",
    )


def _compact_json(value: Any, where: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, RecursionError) as exc:
        raise _fail(f"'{where}' cannot be encoded as JSON.", where) from exc


# ── content blocks ──────────────────────────────────────────────────────────────────────

# cache_control is a caching hint and citations a citation feature: neither changes what the
# model reads, so both are accepted and dropped wherever a block allows them.
_TEXT_KEYS = frozenset({"type", "text", "cache_control", "citations"})
_IMAGE_KEYS = frozenset({"type", "source", "cache_control", "transformations"})
_DOCUMENT_KEYS = frozenset({"type", "source", "cache_control", "citations", "context", "title"})
_TOOL_USE_KEYS = frozenset({"type", "id", "name", "input", "cache_control", "caller", "toolset_name"})
_TOOL_RESULT_KEYS = frozenset({"type", "tool_use_id", "content", "is_error", "cache_control", "toolset_name"})


def _text(block: dict[str, Any], where: str) -> str:
    _known(block, where, _TEXT_KEYS)
    return _string(_required(block, "text", where), f"{where}.text")


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    _known(block, where, _IMAGE_KEYS)
    # transformations (downsize oversized images) is Anthropic's preprocessing; dropped.
    source_where = f"{where}.source"
    source, kind = _block(_required(block, "source", where), source_where)
    if kind == "base64":
        _known(source, source_where, {"type", "media_type", "data"})
        media_type = _one_of(source.get("media_type"), f"{source_where}.media_type", IMAGE_MEDIA_TYPES)
        data = _string(_required(source, "data", source_where), f"{source_where}.data", non_empty=True)
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        _known(source, source_where, {"type", "url"})
        url = _string(_required(source, "url", source_where), f"{source_where}.url")
        if not url.startswith(("https://", "http://")):
            raise _fail(f"'{source_where}.url' must be an http(s) URL.", f"{source_where}.url")
    elif kind == "file":
        raise _fail(
            f"'{source_where}.type' is 'file': Files API references cannot pass through the gateway; "
            "send the image inline (base64) or by URL.",
            f"{source_where}.type",
            "unsupported_content",
        )
    else:
        raise _fail(f"'{source_where}.type' must be 'base64' or 'url'.", f"{source_where}.type")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    """A PDF becomes chat's file part (the inverse of the Anthropic adapter), plain text a text
    part. title, context and citations serve Anthropic's citations, which the gateway's answers
    never carry; dropped."""
    _known(block, where, _DOCUMENT_KEYS)
    source_where = f"{where}.source"
    source, kind = _block(_required(block, "source", where), source_where)
    if kind == "base64":
        _known(source, source_where, {"type", "media_type", "data"})
        _one_of(source.get("media_type"), f"{source_where}.media_type", ("application/pdf",))
        data = _string(_required(source, "data", source_where), f"{source_where}.data", non_empty=True)
        title = block.get("title")
        filename = title if isinstance(title, str) and title else "document.pdf"
        return {"type": "file", "file": {"filename": filename, "file_data": f"data:application/pdf;base64,{data}"}}
    if kind == "text":
        _known(source, source_where, {"type", "media_type", "data"})
        _one_of(source.get("media_type"), f"{source_where}.media_type", ("text/plain",))
        return {"type": "text", "text": _string(_required(source, "data", source_where), f"{source_where}.data")}
    raise _fail(
        f"'{source_where}.type' is '{kind}': documents pass through the gateway as base64 PDF or plain text only.",
        f"{source_where}.type",
        "unsupported_content",
    )


def _tool_call(block: dict[str, Any], where: str) -> dict[str, Any]:
    # caller and toolset_name describe server-side callers (code execution, toolsets), which the
    # gateway refuses; for a client tool call they carry nothing the model needs. Dropped.
    _known(block, where, _TOOL_USE_KEYS)
    call_id = _string(_required(block, "id", where), f"{where}.id", non_empty=True)
    name = _string(_required(block, "name", where), f"{where}.name", non_empty=True)
    arguments = _object(_required(block, "input", where), f"{where}.input")
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": _compact_json(arguments, f"{where}.input")},
    }


def _tool_result(block: dict[str, Any], where: str, pending: set[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the tool message, images to carry in the user message after it).

    Chat's tool messages hold text only, so an image a tool returned (a screenshot, an image
    file read by a coding agent) moves to the user message that follows the tool messages,
    and the tool message says so. `is_error` has no chat field: the text is prefixed
    "Error: " so the model still learns that the tool failed.
    """
    _known(block, where, _TOOL_RESULT_KEYS)
    call_id = _string(_required(block, "tool_use_id", where), f"{where}.tool_use_id", non_empty=True)
    if call_id not in pending:
        raise _fail(
            f"'{where}.tool_use_id' is '{call_id}', which is not a tool_use of the assistant message "
            "just before this one; tool_result blocks must answer the previous assistant turn's tool calls.",
            f"{where}.tool_use_id",
        )
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    content = block.get("content")
    if content is not None:
        for path, item, kind in _blocks(content, f"{where}.content"):
            if kind == "text":
                texts.append(_text(item, path))
            elif kind == "image":
                images.append(_image_part(item, path))
            else:
                raise _fail(
                    f"'{path}.type' is '{kind}': a tool result passes through the gateway as text and images only.",
                    f"{path}.type",
                    "unsupported_content",
                )
    text = "\n".join(texts)
    if block.get("is_error") is not None and _bool(block["is_error"], f"{where}.is_error"):
        text = f"Error: {text}" if text else "Error"
    if images:
        note = f"(The tool returned {len(images)} image(s); they are attached to the next user message.)"
        text = f"{text}\n{note}" if text else note
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


# ── turns ───────────────────────────────────────────────────────────────────────────────


def _pending_calls(out: list[dict[str, Any]]) -> set[str]:
    """The tool call ids a tool message may answer here: those of the assistant message that
    precedes the run of tool messages at the end of `out` (chat's structural rule)."""
    index = len(out) - 1
    while index >= 0 and out[index]["role"] == "tool":
        index -= 1
    if index < 0 or out[index]["role"] != "assistant":
        return set()
    return {call["id"] for call in out[index].get("tool_calls") or []}


def _system_text(content: Any, where: str) -> str:
    """System blocks join with a newline into one string: every backend accepts a string system
    message, not every one a list of parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _fail(f"'{where}' must be a string or an array of text blocks.", where, "invalid_type")
    texts = []
    for path, block, kind in _blocks(content, where):
        if kind != "text":
            raise _fail(f"'{path}.type' must be 'text' in a system prompt.", f"{path}.type")
        texts.append(_text(block, path))
    return "\n".join(texts)


def _user_turn(content: Any, where: str, out: list[dict[str, Any]]) -> None:
    if isinstance(content, str):
        out.append({"role": "user", "content": content})
        return
    blocks = _blocks(content, where)
    if not blocks:
        raise _fail(f"'{where}' must not be empty.", where)
    pending = _pending_calls(out)
    tool_messages: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for path, block, kind in blocks:
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, path)})
        elif kind == "image":
            parts.append(_image_part(block, path))
        elif kind == "document":
            parts.append(_document_part(block, path))
        elif kind == "tool_result":
            message, images = _tool_result(block, path, pending)
            tool_messages.append(message)
            tool_images.extend(images)
        else:
            raise _unsupported_block(kind, path, "user")
    # Chat wants tool messages right after the assistant's tool_calls, so they come first,
    # whatever order the blocks had; the rest of the turn follows as one user message.
    out.extend(tool_messages)
    if tool_images or parts:
        out.append({"role": "user", "content": [*tool_images, *parts]})


def _assistant_turn(content: Any, where: str, out: list[dict[str, Any]]) -> None:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for path, block, kind in _blocks(content, where):
        if kind == "text":
            texts.append(_text(block, path))
        elif kind == "tool_use":
            calls.append(_tool_call(block, path))
        elif kind in ("thinking", "redacted_thinking"):
            # Chat has no field for them, their signatures only verify on Anthropic's own
            # models, and the gateway never returns them: earlier reasoning is left out.
            continue
        else:
            raise _unsupported_block(kind, path, "assistant")
    text = "".join(texts)
    previous = out[-1] if out else None
    if previous is not None and previous["role"] == "assistant":
        # Anthropic combines consecutive assistant messages into one turn; so does the gateway,
        # which keeps a later turn's tool results next to all of the turn's tool calls.
        previous["content"] = (previous.get("content") or "") + text or None
        if calls:
            previous["tool_calls"] = [*(previous.get("tool_calls") or []), *calls]
        if previous["content"] is None and not previous.get("tool_calls"):
            previous["content"] = ""
        return
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    out.append(message)


def _conversation(body: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if body.get("system") is not None:
        system = _system_text(body["system"], "system")
        if system:
            out.append({"role": "system", "content": system})
    messages = _required(body, "messages", "")
    if not isinstance(messages, list) or not messages:
        raise _fail("'messages' must be a non-empty array.", "messages")
    for index, value in enumerate(messages):
        where = f"messages[{index}]"
        message = _object(value, where)
        _known(message, where, {"role", "content"})
        role = _one_of(message.get("role"), f"{where}.role", ("user", "assistant", "system"))
        content = _required(message, "content", where)
        if role == "system":
            text = _system_text(content, f"{where}.content")
            if text:
                out.append({"role": "system", "content": text})
        elif role == "user":
            _user_turn(content, f"{where}.content", out)
        else:
            _assistant_turn(content, f"{where}.content", out)
    return out


# ── tools ───────────────────────────────────────────────────────────────────────────────

# input_examples has no chat equivalent; defer_loading and allowed_callers only matter with
# server tools (tool search, code execution), which are refused; eager_input_streaming is a
# streaming detail. All four are dropped.
_TOOL_KEYS = frozenset(
    {
        "type",
        "name",
        "description",
        "input_schema",
        "cache_control",
        "strict",
        "input_examples",
        "defer_loading",
        "allowed_callers",
        "eager_input_streaming",
    }
)


def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _fail("'tools' must be an array of tool definitions.", "tools", "invalid_type")
    tools = []
    for index, item in enumerate(value):
        where = f"tools[{index}]"
        tool = _object(item, where)
        kind = tool.get("type")
        if kind not in (None, "custom"):
            shown = kind if isinstance(kind, str) else json.dumps(kind)
            raise _fail(
                f"'{where}.type' is '{shown}': built-in server tools are not allowed through the gateway. "
                "Define the tool as a client tool (name, description, input_schema) and run it yourself.",
                f"{where}.type",
                "unsupported_tool",
            )
        _known(tool, where, _TOOL_KEYS)
        function: dict[str, Any] = {
            "name": _string(_required(tool, "name", where), f"{where}.name", non_empty=True),
            "parameters": _object(_required(tool, "input_schema", where), f"{where}.input_schema"),
        }
        if tool.get("description") is not None:
            function["description"] = _string(tool["description"], f"{where}.description")
        if tool.get("strict") is not None:
            function["strict"] = _bool(tool["strict"], f"{where}.strict")
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: Any, tools: list[dict[str, Any]], chat: dict[str, Any]) -> None:
    choice, kind = _block(value, "tool_choice")
    kind = _one_of(kind, "tool_choice.type", ("auto", "any", "tool", "none"))
    _known(choice, "tool_choice", {"type"} if kind == "none" else {"type", "name", "disable_parallel_tool_use"})
    if kind == "tool":
        name = _string(_required(choice, "name", "tool_choice"), "tool_choice.name", non_empty=True)
        if name not in {tool["function"]["name"] for tool in tools}:
            raise _fail(f"'tool_choice.name' is '{name}', which is not one of 'tools'.", "tool_choice.name")
        mapped: str | dict[str, Any] = {"type": "function", "function": {"name": name}}
    else:
        if kind == "any" and not tools:
            raise _fail("'tool_choice' of type 'any' needs 'tools'.", "tool_choice")
        mapped = {"auto": "auto", "any": "required", "none": "none"}[kind]
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None and _bool(disable, "tool_choice.disable_parallel_tool_use") and tools:
        chat["parallel_tool_calls"] = False
    if tools:  # chat rejects tool_choice without tools; auto and none mean nothing then
        chat["tool_choice"] = mapped


# ── the rest of the body ────────────────────────────────────────────────────────────────


def _drop_checked(body: dict[str, Any]) -> None:
    """Check the accepted-but-dropped fields, so a typo still gets a 400 naming it.

    top_k: chat has no top_k and OpenAI rejects unknown parameters; without it sampling is
        merely less restricted. thinking and output_config.effort: chat's nearest field,
        reasoning_effort, is refused by non-reasoning models, and the gateway returns no
        thinking blocks. cache_control, service_tier, speed: cost and capacity hints for
        Anthropic's own account. diagnostics: asks for a cache-miss report the gateway does
        not give.
    """
    if body.get("top_k") is not None:
        _positive_int(body["top_k"], "top_k")
    if body.get("thinking") is not None:
        thinking, kind = _block(body["thinking"], "thinking")
        _one_of(kind, "thinking.type", ("enabled", "disabled", "adaptive", "between_tools"))
        _known(thinking, "thinking", {"type", "budget_tokens", "display"})
        if kind == "enabled":
            _positive_int(_required(thinking, "budget_tokens", "thinking"), "thinking.budget_tokens")
    if body.get("cache_control") is not None:
        _object(body["cache_control"], "cache_control")
    if body.get("service_tier") is not None:
        _one_of(body["service_tier"], "service_tier", ("auto", "standard_only"))
    if body.get("speed") is not None:
        _one_of(body["speed"], "speed", ("standard", "fast"))
    if body.get("diagnostics") is not None:
        _object(body["diagnostics"], "diagnostics")


def _output_config(value: Any, chat: dict[str, Any]) -> None:
    config = _object(value, "output_config")
    _known(config, "output_config", {"effort", "format"})
    if config.get("effort") is not None:
        _one_of(config["effort"], "output_config.effort", ("low", "medium", "high", "xhigh", "max"))
    if config.get("format") is not None:
        output_format, _ = _block(config["format"], "output_config.format")
        _one_of(output_format["type"], "output_config.format.type", ("json_schema",))
        _known(output_format, "output_config.format", {"type", "schema"})
        schema = _object(_required(output_format, "schema", "output_config.format"), "output_config.format.schema")
        # OpenAI's json_schema needs a name; Anthropic's has none.
        chat["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


def _stop_sequences(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise _fail("'stop_sequences' must be an array of non-empty strings.", "stop_sequences")
    if len(value) > MAX_STOP_SEQUENCES:
        # Chat and the OpenAI-compatible backends take at most 4; dropping the rest would let
        # the model run past a stop the client asked for.
        raise _fail(
            f"'stop_sequences' has {len(value)} entries; the gateway accepts at most {MAX_STOP_SEQUENCES}.",
            "stop_sequences",
        )
    return value


def _translate(body: Any, *, fields: frozenset[str], count: bool) -> dict[str, Any]:
    body = _object(body, "body")
    for key in body:
        if key in _REFUSED_FIELDS:
            raise _fail(f"'{key}' is not supported by the gateway: {_REFUSED_FIELDS[key]}.", key, "unsupported_parameter")
        if key not in fields:
            raise _fail(f"'{key}' is not a Messages API field this gateway accepts.", key, "unknown_parameter")
    model = _required(body, "model", "")
    if not isinstance(model, str) or not model.strip():
        raise _fail("'model' must be a non-empty string.", "model", "invalid_type")
    chat: dict[str, Any] = {"model": model}
    if not count:
        chat["max_tokens"] = _positive_int(_required(body, "max_tokens", ""), "max_tokens")
    chat["messages"] = _conversation(body)
    if body.get("stop_sequences") is not None and (stop := _stop_sequences(body["stop_sequences"])):
        chat["stop"] = stop
    if body.get("temperature") is not None:
        chat["temperature"] = _number(body["temperature"], "temperature", 0, 1)
    if body.get("top_p") is not None:
        chat["top_p"] = _number(body["top_p"], "top_p", 0, 1)
    if body.get("stream") is not None and _bool(body["stream"], "stream"):
        chat["stream"] = True
    if body.get("metadata") is not None:
        metadata = _object(body["metadata"], "metadata")
        _known(metadata, "metadata", {"user_id"})
        if metadata.get("user_id") is not None and _string(metadata["user_id"], "metadata.user_id"):
            chat["user"] = metadata["user_id"]
    tools = _tools(body["tools"]) if body.get("tools") is not None else []
    if tools:
        chat["tools"] = tools
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], tools, chat)
    if body.get("output_config") is not None:
        _output_config(body["output_config"], chat)
    _drop_checked(body)
    return chat


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages request (MessageCreateParams) as a canonical chat body."""
    return _translate(body, fields=_CREATE_FIELDS, count=False)


def to_chat_for_count(body: dict[str, Any]) -> dict[str, Any]:
    """A count_tokens body (MessageCountTokensParams: no max_tokens) as a canonical chat body."""
    return _translate(body, fields=_COUNT_FIELDS, count=True)
