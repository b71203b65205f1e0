"""A minimal OpenAI-compatible upstream as a raw ASGI app, fast enough not to be the bottleneck.

Run: uvicorn bench.fast_upstream:app --port N (the gateway benchmark starts it itself).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

# Streams: this many words, this far apart (a model producing ~200 tokens/s).
STREAM_WORDS = 40
STREAM_GAP = float(os.environ.get("BENCH_STREAM_GAP_MS", "5")) / 1000

CHAT = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }
).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if body and json.loads(body).get("stream"):
        await _stream(send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": CHAT})


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def _stream(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "bench"}
    for i in range(STREAM_WORDS):
        delta = {"role": "assistant", "content": "word "} if i == 0 else {"content": "word "}
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        await send({"type": "http.response.body", "body": _event(chunk), "more_body": True})
        await asyncio.sleep(STREAM_GAP)
    end = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {**base, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": STREAM_WORDS, "total_tokens": 50}}
    tail = _event(end) + _event(usage) + b"data: [DONE]\n\n"
    await send({"type": "http.response.body", "body": tail})
