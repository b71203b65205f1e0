"""Malformed requests never make a 500: every refusal is an OpenAI-shaped error.

Seeded random bodies (wrong types, unknown roles, broken parts and tool calls, fields that
belong to the other endpoint) through the real ASGI application, so each run is repeatable.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
import pytest

from dlp.services import pack_apply
from teams.services import IssuedKey

pytestmark = pytest.mark.django_db(transaction=True)

VALUES: list[Any] = [
    None, True, 0, -1, 1.5, "", "x", "mock-small", [], {}, [1, 2], ["a"], {"a": 1}, 10**30, "\x00",
    "4111 1111 1111 1111", [{"type": "text"}], [{"type": "image_url", "image_url": "x"}],
]  # fmt: skip
FIELDS = ["stream", "stream_options", "max_tokens", "max_completion_tokens", "tools", "tool_choice", "n", "temperature",
          "input", "response_format", "stop", "user", "functions", "logit_bias", "seed", "messages"]  # fmt: skip
ROLES: list[Any] = ["user", "system", "developer", "assistant", "tool", "function", "bogus", None, 3]
CONTENTS: list[Any] = [
    *VALUES,
    "hello",
    [{"type": "text", "text": "hi"}],
    [{"type": "text", "text": 5}],
    [{"type": "input_audio"}],
    [5],
]
TOOL_CALLS: list[Any] = [
    [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    [{"function": {"arguments": 5}}],
    [None],
]


def message(r: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.random() < 0.9:
        out["role"] = r.choice(ROLES)
    if r.random() < 0.9:
        out["content"] = r.choice(CONTENTS)
    for name in r.sample(["name", "tool_calls", "tool_call_id", "function_call"], r.randint(0, 2)):
        out[name] = r.choice(VALUES + TOOL_CALLS)
    return out


def body(r: random.Random, embeddings: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"model": r.choice(["mock-small", "mock-small", "llama-3-8b", 5, None, "nope"])}
    if r.random() < 0.9:
        out["messages"] = [message(r) for _ in range(r.randint(0, 3))] if r.random() < 0.8 else r.choice(VALUES)
    for name in r.sample(FIELDS, r.randint(0, 4)):
        out[name] = r.choice(VALUES)
    if embeddings and r.random() < 0.7:
        out["input"] = r.choice([*VALUES, ["a", "b"], [[1, 2]], "text"])
    return out


def test_no_body_makes_a_500_and_every_error_has_openais_shape(sensitive_key: IssuedKey, onprem_upstream: Any) -> None:
    pack_apply(name_or_path="baseline")
    from synapse.asgi import application

    headers = {"authorization": f"Bearer {sensitive_key.plaintext}"}
    r = random.Random(7)
    failures: list[tuple[int, str, dict[str, Any]]] = []

    async def send() -> None:
        transport = httpx.ASGITransport(app=application)  # type: ignore[arg-type]  # Django types the scope dict, httpx MutableMapping
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            for _ in range(800):
                path = r.choice(["/v1/chat/completions", "/v1/chat/completions", "/v1/embeddings"])
                sent = body(r, embeddings=path.endswith("embeddings"))
                response = await client.post(path, content=json.dumps(sent), headers=headers)
                kind = response.headers.get("content-type", "")
                if response.status_code >= 500 or not kind.startswith(("application/json", "text/event-stream")):
                    failures.append((response.status_code, path, sent))
                elif response.status_code >= 400:
                    assert set(response.json()["error"]) == {"message", "type", "param", "code"}, response.text

    asyncio.run(send())
    assert failures == []
