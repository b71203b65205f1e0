"""Applying a key's bound scope to a request."""

from __future__ import annotations

from typing import Any


def bind_system_prompt(system_prompt: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bound prompt goes first; the client's own system/developer messages follow, unchanged.

    The client cannot displace the bound prompt: whatever it sends, the upstream sees the
    approved instruction before anything else.
    """
    return [{"role": "system", "content": system_prompt}, *messages]
