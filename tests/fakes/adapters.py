"""Drive one routing adapter against a fake upstream, the way the gateway does.

Each call gets a fresh event loop and a fresh production HTTP client (httpx on aiohttp):
an aiohttp session is bound to the loop that made it, so the process-wide shared client
cannot be reused across `asyncio.run` calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
from httpx_aiohttp import HttpxAiohttpClient

from routing.adapters.base import Adapter, BackendConfig

T = TypeVar("T")


def run_adapter(adapter_class: type[Adapter], backend: BackendConfig, call: Callable[[Adapter], Awaitable[T]]) -> T:
    async def main() -> T:
        client = HttpxAiohttpClient(follow_redirects=False, trust_env=False, limits=httpx.Limits(max_connections=8))
        try:
            return await call(adapter_class(client=client, backend=backend, default_timeout=10.0))
        finally:
            await client.aclose()

    return asyncio.run(main())


def chat(adapter_class: type[Adapter], backend: BackendConfig, body: dict[str, Any]) -> dict[str, Any]:
    return run_adapter(adapter_class, backend, lambda adapter: adapter.chat(body))


def embeddings(adapter_class: type[Adapter], backend: BackendConfig, body: dict[str, Any]) -> dict[str, Any]:
    return run_adapter(adapter_class, backend, lambda adapter: adapter.embeddings(body))


async def _collect(stream: AsyncIterator[dict[str, Any]], into: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async for chunk in stream:
        into.append(chunk)
    return into


def stream(
    adapter_class: type[Adapter], backend: BackendConfig, body: dict[str, Any], into: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """All chunks of a streamed chat; pass `into` to keep the chunks seen before an error."""
    chunks: list[dict[str, Any]] = [] if into is None else into
    return run_adapter(adapter_class, backend, lambda adapter: _collect(adapter.chat_stream(body), chunks))


def streamed_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])


def streamed_tool_calls(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls reassembled from their deltas, as the openai SDK's stream helpers do."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for delta in choice["delta"].get("tool_calls") or []:
                call = calls.setdefault(delta["index"], {"id": None, "name": "", "arguments": ""})
                call["id"] = delta.get("id") or call["id"]
                function = delta.get("function") or {}
                call["name"] += function.get("name") or ""
                call["arguments"] += function.get("arguments") or ""
    return [calls[index] for index in sorted(calls)]
