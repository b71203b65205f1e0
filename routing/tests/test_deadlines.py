"""Deadlines enforced by the adapters' HTTP layer, on the client the gateway really uses (httpx on aiohttp)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from httpx_aiohttp import HttpxAiohttpClient

from routing.adapters import ADAPTERS, BackendConfig, UpstreamError
from routing.adapters.anthropic import AnthropicAdapter
from tests.fakes.adapters import stream
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.base import Reply, sse_lines


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A port whose listener never accepts and whose queue is full: connecting just hangs
    (Linux drops the SYN), as with a backend host that is down behind a firewall."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


@pytest.mark.parametrize("kind", ["vllm", "azure_openai", "anthropic", "gemini"])
def test_a_backend_that_never_accepts_fails_on_its_connect_deadline(unaccepting_port: int, kind: str) -> None:
    config = BackendConfig(
        name=kind, kind=kind, base_url=f"http://127.0.0.1:{unaccepting_port}/v1", location="on_prem",
        connect_timeout=0.3, timeout=60,
    )  # fmt: skip
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

    async def call() -> None:
        async with HttpxAiohttpClient() as client:
            await ADAPTERS[kind](client=client, backend=config, default_timeout=60).chat(body)

    with pytest.raises(UpstreamError) as caught:
        asyncio.run(call())
    # Named for the deadline that passed (not the 60 s total), and a 504 the dispatcher fails over.
    assert (caught.value.status, caught.value.code) == (504, "upstream_timeout")
    assert caught.value.message.endswith(
        f"backend '{kind}' at 127.0.0.1:{unaccepting_port} did not accept the connection within 0.3 s"
    )


def test_events_that_carry_no_content_do_not_meet_the_first_chunk_deadline() -> None:
    # Anthropic opens with message_start and pings: the first *chunk* is what commits the
    # dispatcher to a backend, so a stream that only says it is alive fails over in time.
    silent = [("message_start", json.dumps({"type": "message_start", "message": {"id": "msg_1", "usage": {}}}))]
    silent += [("ping", json.dumps({"type": "ping"}))] * 6
    fake = FakeAnthropic()
    fake.start()
    fake.fail_next(Reply(chunks=list(sse_lines(iter(silent))), chunk_delay=0.2))
    config = BackendConfig(
        name="claude", kind="anthropic", base_url=fake.base_url, location="cloud", timeout=30, first_byte_timeout=0.5
    )
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamError) as caught:
            stream(AnthropicAdapter, config, {"model": "claude", "messages": [{"role": "user", "content": "hi"}]})
    finally:
        fake.stop()

    assert (caught.value.status, caught.value.code) == (504, "upstream_timeout")
    assert caught.value.message == "Anthropic sent nothing within 0.5 s"
    assert time.monotonic() - started < 1.1
