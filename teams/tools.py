"""A key's tool policy: which tools (MCP tools as `server__tool`, or /v1 function tools) it may use.

The policy is a tuple of patterns bound to the key at issuance. Matching is `fnmatch`-style
and case-sensitive (`fnmatch.fnmatchcase`, never the OS-dependent `fnmatch.fnmatch`):

- `*` matches any run of characters, the `__` separator included (`crm__*` allows every tool
  of the `crm` server; `*__*` allows every tool of every server);
- `?` matches one character; `[abc]` / `[!abc]` one character of / not of a set;
- anything else matches itself, so a plain name (`crm__lookup_customer`) allows that one tool.

A name is allowed if any pattern matches the whole name.
"""

from __future__ import annotations

import fnmatch
import re

# Tool names as MCP (A-Z a-z 0-9 _ . -) and OpenAI function names use them, plus glob syntax.
_PATTERN = re.compile(r"[A-Za-z0-9_.\-*?\[\]!]{1,160}")


def tool_allowed(patterns: tuple[str, ...], name: str) -> bool:
    """Whether `name` is allowed by a key's tool patterns.

    An empty tuple is "no tool policy": every name is allowed. That is the /v1 meaning (a key
    issued without `--tools` may declare its own function tools). The /mcp gateway never asks
    with an empty tuple: a key without a tool policy has no MCP tools at all.
    """
    if not patterns:
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def parse_tool_patterns(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated patterns (or a list of them), validated, de-duplicated, order kept.

    Raises ValueError naming the first bad pattern.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    patterns: dict[str, None] = {}
    for item in items:
        pattern = item.strip()
        if not pattern:
            continue
        if not _PATTERN.fullmatch(pattern):
            raise ValueError(
                f"'{pattern}' is not a tool name or glob (letters, digits, _ . - and * ? [ ] !; MCP tools are named server__tool)"
            )
        if pattern.count("[") != pattern.count("]"):
            raise ValueError(f"'{pattern}' has an unclosed [ ] set")
        patterns[pattern] = None
    return tuple(patterns)


def stored_patterns(text: str) -> tuple[str, ...] | None:
    """The stored form (comma-separated, '' = no policy) as KeyScope carries it."""
    patterns = tuple(part for part in text.split(",") if part) if text else ()
    return patterns or None


def server_may_match(patterns: tuple[str, ...], server: str) -> bool:
    """Whether any pattern could allow a tool of `server` (MCP tools are `server__tool`).

    Used to skip asking a server for its tools when the key could not use any of them. Server
    names contain no underscore, so in a tool's name the first `__` ends the server's name: a
    pattern whose part before its first `__` holds no glob character allows tools of exactly
    that server; one with a glob there, or a glob and no `__` at all, may allow any server.
    """
    for pattern in patterns:
        head, separator, _ = pattern.partition("__")
        if any(char in head for char in "*?["):
            return True
        if separator and head == server:
            return True
    return False
