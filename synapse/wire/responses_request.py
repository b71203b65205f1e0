"""A Responses API request (`POST /v1/responses`) read as a canonical chat-completions body.

Two products: the chat body the pipeline governs, and the client's settings as the
`Response` object echoes them back. Only fields this module knows are forwarded; each
other field of the Responses API is either translated, dropped with a reason given here,
or refused with a 400 that names it. Every refusal is a `GatewayError` in OpenAI's shape
with `param` in OpenAI's style (`input[2].content[0].image_url`), whatever JSON arrives.

The gateway keeps no conversation state: anything that needs a response or item stored at
the provider (`previous_response_id`, `conversation`, `item_reference`, `background`,
stored `prompt` templates, provider file ids) is refused rather than half-honoured.
"""

from __future__ import annotations

import math
from typing import Any

from synapse.errors import GatewayError, invalid_request

# Types of the Responses API's built-in tools. Hosted ones run at the provider, outside every
# control of the gateway (web search, file search, code interpreter, remote MCP, image
# generation); the client-run ones (computer use, shell, apply_patch, custom grammars,
# namespaces) are model-native protocols with no chat-completions equivalent.
BUILTIN_TOOLS = frozenset(
    {
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "file_search",
        "code_interpreter",
        "image_generation",
        "mcp",
        "tool_search",
        "programmatic_tool_calling",
        "computer",
        "computer_use",
        "computer_use_preview",
        "local_shell",
        "shell",
        "apply_patch",
        "custom",
        "namespace",
    }
)

EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
SUMMARIES = frozenset({"auto", "concise", "detailed"})
VERBOSITIES = frozenset({"low", "medium", "high"})
SERVICE_TIERS = frozenset({"auto", "default", "flex", "scale", "priority", "fast", "ultrafast"})
# Chat completions knows low/high/auto; "original" (no downscaling) is closest to "high".
IMAGE_DETAILS = {"low": "low", "high": "high", "auto": "auto", "original": "high"}
# `include` values asking for data about items this door never produces (hosted tool calls,
# reasoning items, stored input images): there is nothing to include, so they are dropped.
HARMLESS_INCLUDES = frozenset(
    {
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
    }
)

KNOWN_FIELDS = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
        "temperature", "top_p", "user", "safety_identifier", "stream", "text", "reasoning", "service_tier",
        "metadata", "store", "include", "truncation", "max_tool_calls", "stream_options", "top_logprobs",
        "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options", "image", "background",
        "previous_response_id", "conversation", "prompt", "access_programs", "context_management", "moderation",
    }
)  # fmt: skip


# ── errors ──────────────────────────────────────────────────────────────────────────────


def _invalid(message: str, param: str, code: str = "invalid_value") -> GatewayError:
    return invalid_request(message, param=param, code=code)


def _stateless(param: str, what: str) -> GatewayError:
    return _invalid(
        f"'{param}' {what}, but this gateway keeps no conversation state and stores nothing at the provider. "
        "Send the full conversation in 'input' instead.",
        param,
        "stateless_gateway",
    )


def _unsupported(param: str, why: str) -> GatewayError:
    return _invalid(f"'{param}' is not supported through this gateway: {why}.", param, "unsupported_parameter")


def _string(value: Any, param: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _invalid(f"'{param}' must be a string.", param, "invalid_type")
    return value


def _required(value: Any, param: str) -> str:
    if value is None:
        raise _invalid(f"'{param}' is required and must be a string.", param, "missing_required_parameter")
    if not isinstance(value, str):
        raise _invalid(f"'{param}' must be a string.", param, "invalid_type")
    return value


def _boolean(value: Any, param: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise _invalid(f"'{param}' must be a boolean.", param, "invalid_type")
    return value


def _integer(value: Any, param: str, low: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _invalid(f"'{param}' must be an integer of at least {low}.", param)
    return value


def _number(value: Any, param: str, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or not 0 <= value <= high:
        raise _invalid(f"'{param}' must be a number between 0 and {high:g}.", param)
    return value


def _object(value: Any, param: str) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise _invalid(f"'{param}' must be an object.", param, "invalid_type")
    return value


def _choice(value: Any, param: str, allowed: frozenset[str] | tuple[str, ...]) -> str | None:
    if value is not None and (not isinstance(value, str) or value not in allowed):
        raise _invalid(f"'{param}' must be one of {', '.join(sorted(allowed))}.", param)
    return value


# ── input: items to chat messages ──────────────────────────────────────────────────────


def _text_part(part: dict[str, Any], where: str, key: str = "text") -> dict[str, Any]:
    return {"type": "text", "text": _required(part.get(key), f"{where}.{key}")}


def _image_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    if part.get("file_id") is not None:
        raise _unsupported(
            f"{where}.file_id",
            "a file id names content stored at one provider, which the gateway cannot inspect or route; "
            "send the image as an https URL or a data URL in 'image_url'",
        )
    url = _required(part.get("image_url"), f"{where}.image_url")
    if not url:
        raise _invalid(f"'{where}.image_url' must be a non-empty URL or data URL.", f"{where}.image_url")
    image: dict[str, Any] = {"url": url}
    detail = _choice(part.get("detail"), f"{where}.detail", tuple(IMAGE_DETAILS))
    if detail is not None:
        image["detail"] = IMAGE_DETAILS[detail]
    return {"type": "image_url", "image_url": image}


def _file_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    for field in ("file_id", "file_url"):
        if part.get(field) is not None:
            raise _unsupported(
                f"{where}.{field}",
                "files stored at a provider or fetched from a URL cannot pass the gateway's inspection; "
                "send the file inline as 'file_data' (a base64 data URL)",
            )
    data = _required(part.get("file_data"), f"{where}.file_data")
    file: dict[str, Any] = {"file_data": data}
    if (filename := _string(part.get("filename"), f"{where}.filename")) is not None:
        file["filename"] = filename
    return {"type": "file", "file": file}


def _content_part(role: str, part: Any, where: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise _invalid(f"'{where}' must be an object with a 'type'.", where, "invalid_type")
    kind = part.get("type")
    if kind == "input_text":
        return _text_part(part, where)
    if role == "assistant" and kind == "output_text":
        return _text_part(part, where)
    if role == "assistant" and kind == "refusal":
        # An earlier refusal is part of the conversation: the model sees what it said.
        return {"type": "text", "text": _required(part.get("refusal"), f"{where}.refusal")}
    if role == "user" and kind == "input_image":
        return _image_part(part, where)
    if role == "user" and kind == "input_file":
        return _file_part(part, where)
    if kind in ("input_image", "input_file", "output_text", "refusal"):
        raise _invalid(f"'{where}.type' '{kind}' is not allowed in a message with role '{role}'.", f"{where}.type")
    raise _invalid(f"'{where}.type' must be a known content part type (input_text, input_image, input_file).", f"{where}.type")


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise _invalid(f"'{where}.role' must be one of assistant, developer, system, user.", f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise _invalid(f"'{where}.content' must be a string or an array of content parts.", f"{where}.content", "invalid_type")
    parts = [_content_part(role, part, f"{where}.content[{index}]") for index, part in enumerate(content)]
    if role == "assistant":
        # One string: every backend reads an assistant turn's text that way.
        return {"role": role, "content": "".join(part["text"] for part in parts)}
    return {"role": role, "content": parts}


def _function_call(messages: list[dict[str, Any]], item: dict[str, Any], where: str) -> None:
    call = {
        "id": _required(item.get("call_id"), f"{where}.call_id"),
        "type": "function",
        "function": {
            "name": _required(item.get("name"), f"{where}.name"),
            "arguments": _required(item.get("arguments"), f"{where}.arguments"),
        },
    }
    # Chat completions carries a turn's calls on one assistant message: consecutive calls
    # merge, and an assistant message right before them (its text) carries them too.
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _function_output(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = _required(item.get("call_id"), f"{where}.call_id")
    output = item.get("output")
    if isinstance(output, str):
        return {"role": "tool", "tool_call_id": call_id, "content": output}
    if not isinstance(output, list):
        raise _invalid(f"'{where}.output' must be a string or an array of content parts.", f"{where}.output", "invalid_type")
    parts = []
    for index, part in enumerate(output):
        part_where = f"{where}.output[{index}]"
        if not isinstance(part, dict):
            raise _invalid(f"'{part_where}' must be an object with a 'type'.", part_where, "invalid_type")
        if part.get("type") in ("input_image", "input_file"):
            raise _unsupported(f"{part_where}.type", "chat-completions tool results carry text only")
        if part.get("type") != "input_text":
            raise _invalid(f"'{part_where}.type' must be 'input_text'.", f"{part_where}.type")
        parts.append(_text_part(part, part_where))
    return {"role": "tool", "tool_call_id": call_id, "content": parts or ""}


def _messages(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if value is None:
        raise _invalid("'input' is required: a string or an array of input items.", "input", "missing_required_parameter")
    if not isinstance(value, list):
        raise _invalid("'input' must be a string or an array of input items.", "input", "invalid_type")
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise _invalid(f"'{where}' must be an object.", where, "invalid_type")
        kind = item.get("type")
        if kind is None:
            # The SDK's shorthands: a message needs no type; an item reference is just an id.
            kind = "message" if "role" in item else "item_reference" if "id" in item else None
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            _function_call(messages, item, where)
        elif kind == "function_call_output":
            messages.append(_function_output(item, where))
        elif kind == "reasoning":
            # Dropped: a reasoning item is the provider's own (often encrypted) chain of thought,
            # opaque to DLP and meaningful only to the model that wrote it; chat completions has
            # no slot for it. The model reasons again from the visible conversation.
            continue
        elif kind == "item_reference":
            raise _stateless(f"{where}.id", "refers to an item stored at the provider")
        elif isinstance(kind, str):
            raise _invalid(
                f"'{where}.type' '{kind}' is not supported through this gateway; input items may be "
                "messages, function_call, function_call_output and reasoning (which is dropped).",
                f"{where}.type",
                "unsupported_input_item",
            )
        else:
            raise _invalid(f"'{where}' must have a 'type' or a 'role'.", f"{where}.type", "missing_required_parameter")
    if not messages:
        raise _invalid("'input' must contain at least one message or function call item.", "input")
    return messages


# ── tools ──────────────────────────────────────────────────────────────────────────────


def _tools(value: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(chat tools, the tools as the Response echoes them)."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        raise _invalid("'tools' must be an array of tools.", "tools", "invalid_type")
    chat, echo = [], []
    for index, tool in enumerate(value):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise _invalid(f"'{where}' must be an object.", where, "invalid_type")
        kind = tool.get("type")
        if isinstance(kind, str) and kind in BUILTIN_TOOLS:
            raise _invalid(
                f"'{where}.type' '{kind}' is a built-in tool of the Responses API. Built-in and hosted tools are not "
                "allowed through the gateway: they run outside its controls or have no chat-completions equivalent. "
                "Declare your own tools with type 'function'.",
                f"{where}.type",
                "unsupported_tool",
            )
        if kind != "function":
            raise _invalid(f"'{where}.type' must be 'function'.", f"{where}.type")
        name = _required(tool.get("name"), f"{where}.name")
        if not name:
            raise _invalid(f"'{where}.name' must be a non-empty string.", f"{where}.name")
        description = _string(tool.get("description"), f"{where}.description")
        parameters = _object(tool.get("parameters"), f"{where}.parameters")
        strict = _boolean(tool.get("strict"), f"{where}.strict")
        # Not forwarded: `defer_loading`, `allowed_callers`, `async` and `output_schema` belong
        # to tool search and programmatic calling, which are refused above; every tool declared
        # here is simply available to the model.
        function: dict[str, Any] = {"name": name}
        if description is not None:
            function["description"] = description
        if parameters is not None:
            function["parameters"] = parameters
        if strict is not None:
            function["strict"] = strict
        chat.append({"type": "function", "function": function})
        echo.append({"type": "function", "name": name, "description": description, "parameters": parameters, "strict": strict})
    return chat, echo


def _tool_choice(value: Any, tools: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """(chat tool_choice or None, the tools kept): `allowed_tools` narrows the tool list itself,
    which every backend understands, rather than relying on OpenAI's own allowed_tools form."""
    if value is None or value in ("auto", "none"):
        return value, tools
    if value == "required":
        if not tools:
            raise _invalid("'tool_choice' is 'required' but no tools were given.", "tool_choice")
        return value, tools
    if not isinstance(value, dict):
        raise _invalid("'tool_choice' must be 'auto', 'none', 'required' or an object.", "tool_choice")
    names = {tool["function"]["name"] for tool in tools}
    kind = value.get("type")
    if kind == "function":
        name = _required(value.get("name"), "tool_choice.name")
        if name not in names:
            raise _invalid(f"'tool_choice.name' '{name}' is not one of the declared tools.", "tool_choice.name")
        return {"type": "function", "function": {"name": name}}, tools
    if kind == "allowed_tools":
        mode = _choice(value.get("mode"), "tool_choice.mode", ("auto", "required"))
        allowed = value.get("tools")
        if mode is None or not isinstance(allowed, list) or not allowed:
            raise _invalid("'tool_choice' of type 'allowed_tools' needs a 'mode' and a non-empty 'tools' array.", "tool_choice")
        keep: set[str] = set()
        for index, entry in enumerate(allowed):
            where = f"tool_choice.tools[{index}]"
            if not isinstance(entry, dict) or entry.get("type") != "function":
                raise _invalid(f"'{where}' must be an object of type 'function' (built-in tools are not allowed).", where)
            name = _required(entry.get("name"), f"{where}.name")
            if name not in names:
                raise _invalid(f"'{where}.name' '{name}' is not one of the declared tools.", f"{where}.name")
            keep.add(name)
        return mode, [tool for tool in tools if tool["function"]["name"] in keep]
    if isinstance(kind, str) and kind in BUILTIN_TOOLS:
        raise _invalid(
            f"'tool_choice.type' '{kind}' selects a built-in tool; built-in and hosted tools are not allowed "
            "through the gateway.",
            "tool_choice.type",
            "unsupported_tool",
        )
    raise _invalid("'tool_choice.type' must be 'function' or 'allowed_tools'.", "tool_choice.type")


# ── the other settings ─────────────────────────────────────────────────────────────────


def _text(value: Any, chat: dict[str, Any]) -> dict[str, Any]:
    """Fill chat's response_format/verbosity; return the `text` config as the Response echoes it."""
    text = _object(value, "text") or {}
    echo: dict[str, Any] = {"format": {"type": "text"}}
    verbosity = _choice(text.get("verbosity"), "text.verbosity", VERBOSITIES)
    if verbosity is not None:
        chat["verbosity"] = verbosity
        echo["verbosity"] = verbosity
    form = _object(text.get("format"), "text.format")
    if form is None:
        return echo
    kind = form.get("type")
    if kind == "text":
        return echo
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
        echo["format"] = {"type": "json_object"}
        return echo
    if kind != "json_schema":
        raise _invalid("'text.format.type' must be one of text, json_object, json_schema.", "text.format.type")
    name = _required(form.get("name"), "text.format.name")
    schema = _object(form.get("schema"), "text.format.schema")
    if schema is None:
        raise _invalid(
            "'text.format.schema' is required for a json_schema format.", "text.format.schema", "missing_required_parameter"
        )
    spec: dict[str, Any] = {"name": name, "schema": schema}
    if (description := _string(form.get("description"), "text.format.description")) is not None:
        spec["description"] = description
    if (strict := _boolean(form.get("strict"), "text.format.strict")) is not None:
        spec["strict"] = strict
    chat["response_format"] = {"type": "json_schema", "json_schema": spec}
    echo["format"] = {"type": "json_schema", **spec}
    return echo


def _reasoning(value: Any, chat: dict[str, Any]) -> dict[str, Any] | None:
    reasoning = _object(value, "reasoning")
    if reasoning is None:
        return None
    effort = _choice(reasoning.get("effort"), "reasoning.effort", EFFORTS)
    # Dropped: summaries (chat completions returns none, so the answer simply has no reasoning
    # items) and `context` (which earlier reasoning items to keep: this door drops them all).
    summary = _choice(reasoning.get("summary"), "reasoning.summary", SUMMARIES)
    _choice(reasoning.get("generate_summary"), "reasoning.generate_summary", SUMMARIES)
    _choice(reasoning.get("context"), "reasoning.context", ("auto", "current_turn", "all_turns"))
    mode = reasoning.get("mode")
    if mode is not None and mode != "standard":
        raise _unsupported("reasoning.mode", "chat completions has no reasoning modes")
    if effort is not None:
        chat["reasoning_effort"] = effort
    return {"effort": effort, "summary": summary}


def _metadata(value: Any) -> dict[str, str]:
    # Never forwarded: it labels the stored response at the provider, and nothing is stored.
    metadata = _object(value, "metadata") or {}
    if len(metadata) > 16:
        raise _invalid("'metadata' may hold at most 16 key-value pairs.", "metadata")
    for key, item in metadata.items():
        if len(key) > 64 or not isinstance(item, str) or len(item) > 512:
            raise _invalid(
                "'metadata' keys must be strings of at most 64 characters and values strings of at most 512.",
                f"metadata.{key}",
            )
    return metadata


# Log probabilities carry the model's raw tokens beside the text, where output DLP, which
# redacts the text, cannot reach them.
_LOGPROBS = "log probabilities would carry the model's raw tokens past output DLP"


def _include(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise _invalid("'include' must be an array of strings.", "include", "invalid_type")
    for index, entry in enumerate(value):
        if entry == "message.output_text.logprobs":
            raise _unsupported(f"include[{index}]", _LOGPROBS)
        if not isinstance(entry, str) or entry not in HARMLESS_INCLUDES:
            raise _invalid(f"'include[{index}]' is not a known include value.", f"include[{index}]")


def _refuse_stateful(body: dict[str, Any]) -> None:
    if body.get("previous_response_id") is not None:
        raise _stateless("previous_response_id", "refers to a response stored at the provider")
    if body.get("conversation") is not None:
        raise _stateless("conversation", "refers to a conversation stored at the provider")
    if _boolean(body.get("background"), "background"):
        raise _stateless("background", "asks the provider to run and store the response for later retrieval")
    if body.get("prompt") is not None:
        raise _unsupported(
            "prompt", "stored prompt templates live at the provider; this key's instructions are bound by the gateway"
        )
    if body.get("access_programs") is not None:
        raise _unsupported("access_programs", "provider access programs are not managed through the gateway")
    if body.get("context_management"):
        raise _unsupported("context_management", "server-side context compaction needs state at the provider")
    if body.get("moderation") is not None:
        raise _unsupported("moderation", "provider-side moderation is not available through the gateway")
    options = _object(body.get("prompt_cache_options"), "prompt_cache_options") or {}
    if options.get("prewarm"):
        raise _unsupported("prompt_cache_options.prewarm", "a request that generates nothing cannot be governed")
    top_logprobs = _integer(body.get("top_logprobs"), "top_logprobs", 0)
    if top_logprobs:
        raise _unsupported("top_logprobs", _LOGPROBS)


# ── the request as a whole ─────────────────────────────────────────────────────────────


def read_request(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the canonical chat body, the client's settings as the `Response` echoes them).

    Raises `GatewayError` for the first problem found.
    """
    for name in body:
        if name not in KNOWN_FIELDS:
            raise _invalid(f"Unrecognized request argument supplied: {name}", name, "unknown_parameter")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _invalid(
            "'model' is required and must be a non-empty string.",
            "model",
            "missing_required_parameter" if model is None else "invalid_type",
        )
    _refuse_stateful(body)
    # Dropped after these checks: `store` (nothing is ever stored at the provider; the answer
    # says store: false), `truncation: "auto"` (the gateway cannot know a backend's context
    # window; an input that does not fit gets the backend's clear error instead of silently
    # losing its start), `max_tool_calls` (it caps built-in tool calls, which are refused),
    # `stream_options` (obfuscation padding only), `image` and the prompt-cache hints (which
    # change no answer).
    _boolean(body.get("store"), "store")
    _choice(body.get("truncation"), "truncation", ("auto", "disabled"))
    max_tool_calls = _integer(body.get("max_tool_calls"), "max_tool_calls", 1)
    _object(body.get("stream_options"), "stream_options")
    _object(body.get("image"), "image")
    prompt_cache_key = _string(body.get("prompt_cache_key"), "prompt_cache_key")
    _choice(body.get("prompt_cache_retention"), "prompt_cache_retention", ("in_memory", "24h"))
    _include(body.get("include"))

    instructions = _string(body.get("instructions"), "instructions")
    messages = _messages(body.get("input"))
    if instructions:
        # First among the client's messages; the pipeline puts the key's bound prompt before it.
        messages.insert(0, {"role": "system", "content": instructions})
    chat: dict[str, Any] = {"model": model, "messages": messages}

    tools, tools_echo = _tools(body.get("tools"))
    tool_choice, tools = _tool_choice(body.get("tool_choice"), tools)
    parallel = _boolean(body.get("parallel_tool_calls"), "parallel_tool_calls")
    if tools:
        chat["tools"] = tools
        if tool_choice is not None:
            chat["tool_choice"] = tool_choice
        if parallel is not None:
            # Only with tools: OpenAI rejects parallel_tool_calls on a request without any.
            chat["parallel_tool_calls"] = parallel

    max_output_tokens = _integer(body.get("max_output_tokens"), "max_output_tokens", 1)
    if max_output_tokens is not None:
        # max_tokens, which every backend kind honours; Ollama, for one, silently ignores the
        # newer max_completion_tokens, which would let an answer outrun the key's ceiling.
        chat["max_tokens"] = max_output_tokens
    temperature = _number(body.get("temperature"), "temperature", 2)
    if temperature is not None:
        chat["temperature"] = temperature
    top_p = _number(body.get("top_p"), "top_p", 1)
    if top_p is not None:
        chat["top_p"] = top_p
    user = _string(body.get("user"), "user")
    safety_identifier = _string(body.get("safety_identifier"), "safety_identifier")
    if safety_identifier or user:
        # Chat's one end-user field; safety_identifier is the Responses API's newer name for it.
        chat["user"] = safety_identifier or user
    service_tier = _choice(body.get("service_tier"), "service_tier", SERVICE_TIERS)
    if service_tier is not None:
        chat["service_tier"] = service_tier
    if _boolean(body.get("stream"), "stream"):
        chat["stream"] = True
    text = _text(body.get("text"), chat)
    reasoning = _reasoning(body.get("reasoning"), chat)

    echo: dict[str, Any] = {
        "instructions": instructions,
        "tools": tools_echo,
        "tool_choice": body.get("tool_choice") if body.get("tool_choice") is not None else "auto",
        "parallel_tool_calls": parallel if parallel is not None else True,
        "temperature": temperature,
        "top_p": top_p,
        "max_output_tokens": max_output_tokens,
        "max_tool_calls": max_tool_calls,
        "text": text,
        "reasoning": reasoning,
        "metadata": _metadata(body.get("metadata")),
        # What the gateway does whatever was asked (see above).
        "truncation": "disabled",
        "user": user,
        "safety_identifier": safety_identifier,
        "prompt_cache_key": prompt_cache_key,
        "service_tier": service_tier,
    }
    return chat, echo


def settings_echo(body: dict[str, Any]) -> dict[str, Any]:
    """The settings a `Response` echoes for a request already accepted (defaults otherwise)."""
    try:
        # Without the input: the echo does not need it, and it can be large.
        return read_request({**body, "input": ""})[1]
    except GatewayError:
        return read_request({"model": "-", "input": ""})[1]
