"""A key's tool policy on the chat doors (/v1/chat/completions, /v1/responses, /v1/messages).

Every door's request is canonical chat by the time this runs, so one check covers them all:
a key issued with `--tools` may only declare function tools its patterns allow, and an answer
may only call tools the request declared — a model that calls anything else (a tool named in
an injected prompt, a hallucinated one) has its answer withheld. Keys without a tool policy
declare their own tools freely, as before.
"""

from __future__ import annotations

from typing import Any

from teams.selectors import KeyScope
from teams.tools import tool_allowed

from .errors import tool_not_allowed


def declared_tools(body: dict[str, Any]) -> list[str]:
    """The function names a chat body declares (`tools`, and the legacy `functions`)."""
    names: list[str] = []
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        names.append(name if isinstance(name, str) else "")
    for function in body.get("functions") or []:
        name = function.get("name") if isinstance(function, dict) else None
        names.append(name if isinstance(name, str) else "")
    return names


def tools_admit(scope: KeyScope, body: dict[str, Any]) -> frozenset[str] | None:
    """The tools an answer may call, or None when the key has no tool policy.

    Raises `tool_not_allowed` for the first declared tool off the key's list.
    """
    if not scope.tools:
        return None
    names = declared_tools(body)
    for name in names:
        if not tool_allowed(scope.tools, name):
            raise tool_not_allowed(name)
    return frozenset(names)


def undeclared_call(choices: Any, allowed: frozenset[str], *, streamed: bool) -> str | None:
    """The first tool an answer calls that the request did not declare, or None.

    Streamed, a call's name arrives in its first delta, before any of its arguments, so the
    stream is stopped before the client sees anything of that call.
    """
    for choice in choices if isinstance(choices, list) else []:
        if not isinstance(choice, dict):
            continue
        message = choice.get("delta" if streamed else "message")
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        legacy = message.get("function_call") if isinstance(message, dict) else None
        for call in [*(calls if isinstance(calls, list) else []), *([{"function": legacy}] if legacy else [])]:
            function = call.get("function") if isinstance(call, dict) else None
            name = function.get("name") if isinstance(function, dict) else None
            if isinstance(name, str) and name and name not in allowed:
                return name
    return None
