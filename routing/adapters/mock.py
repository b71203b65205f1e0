"""The built-in `mock` backend: deterministic answers without any network, for the quick start.

It behaves like an on-prem OpenAI-compatible model: it answers by echoing the last user
message, streams word by word, reports usage, and returns stable embeddings, so a new user
can exercise every governance layer before connecting a real model.
"""

from __future__ import annotations

import hashlib
import math
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from .base import Adapter, Operation


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")
    return ""


def _count(text: str) -> int:
    # Roughly a token per 4 characters, the usual rule of thumb; at least one.
    return max(1, math.ceil(len(text) / 4))


class MockAdapter(Adapter):
    kind = "mock"
    label = "Mock"
    operations = frozenset({Operation.CHAT, Operation.CHAT_STREAM, Operation.EMBEDDINGS})

    def _reply(self, body: dict[str, Any]) -> tuple[str, int]:
        messages = body.get("messages", [])
        prompt = "".join(_text_of(m.get("content")) for m in messages)
        last_user = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        reply = f'Mock answer from {body.get("model", "mock")}: you said "{last_user}".'
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and limit > 0:
            reply = " ".join(reply.split(" ")[:limit])
        return reply, _count(prompt)

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        reply, prompt_tokens = self._reply(body)
        completion_tokens = _count(reply)
        return {
            "id": f"chatcmpl-mock-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "mock"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": reply}, "logprobs": None, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        reply, prompt_tokens = self._reply(body)
        base = {
            "id": f"chatcmpl-mock-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "mock"),
        }
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        words = reply.split(" ")
        for position, word in enumerate(words):
            piece = word if position == len(words) - 1 else word + " "
            yield {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        completion_tokens = _count(reply)
        yield {
            **base,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else [inputs]
        data = []
        tokens = 0
        for index, item in enumerate(items):
            text = item if isinstance(item, str) else " ".join(str(token) for token in item)
            tokens += _count(text)
            digest = hashlib.sha256(text.encode()).digest()
            raw = struct.unpack("16h", digest)
            norm = math.sqrt(sum(v * v for v in raw)) or 1.0
            data.append({"object": "embedding", "index": index, "embedding": [v / norm for v in raw]})
        return {
            "object": "list",
            "data": data,
            "model": body.get("model", "mock"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
