"""A backend that gives no response at all: each cause is named for what happened.

On the production client (httpx on aiohttp), which reports every connection error as
httpx.ConnectTimeout, so the class of the exception cannot be what decides.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import httpx
import pytest
from httpx_aiohttp import HttpxAiohttpClient
from httpx_aiohttp.transport import map_aiohttp_exceptions

from routing.adapters import ADAPTERS, BackendConfig, UpstreamError
from routing.adapters.errors import NoResponse, why_no_response
from tests.fakes.openai import FakeOpenAI

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
KINDS = ["vllm", "azure_openai", "anthropic", "gemini"]
LABELS = {"vllm": "vLLM", "azure_openai": "Azure OpenAI", "anthropic": "Anthropic", "gemini": "Gemini"}


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: the kernel answers a connection with RST (refused)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


def call(config: BackendConfig, *, stream: bool) -> UpstreamError:
    async def main() -> None:
        async with HttpxAiohttpClient(trust_env=False) as client:
            adapter = ADAPTERS[config.kind](client=client, backend=config, default_timeout=10)
            if stream:
                [_ async for _ in adapter.chat_stream({**BODY, "stream": True})]
            else:
                await adapter.chat(BODY)

    with pytest.raises(UpstreamError) as caught:
        asyncio.run(main())
    return caught.value


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_connection_is_named_as_refused(closed_port: int, kind: str, stream: bool) -> None:
    config = BackendConfig(name="local-llm", kind=kind, base_url=f"http://127.0.0.1:{closed_port}/v1", location="on_prem")

    error = call(config, stream=stream)

    # A retryable 502: the dispatcher retries it at once, where a 504 would be failed over untried.
    assert (error.status, error.code, error.retryable) == (502, "upstream_unreachable", True)
    assert error.message == f"connection refused by {LABELS[kind]} backend 'local-llm' at 127.0.0.1:{closed_port}"


def test_a_failed_tls_handshake_is_named_and_not_retried_on_the_same_backend() -> None:
    plain_http = FakeOpenAI()
    plain_http.start()
    try:
        config = BackendConfig(
            name="tls-llm", kind="vllm", base_url=f"https://127.0.0.1:{plain_http.port}/v1", location="on_prem"
        )
        error = call(config, stream=False)
    finally:
        plain_http.stop()

    assert (error.status, error.code, error.retryable) == (502, "upstream_unreachable", False)
    assert error.message.startswith(f"TLS with vLLM backend 'tls-llm' at 127.0.0.1:{plain_http.port} failed")


def _mapped(aiohttp_error: Exception) -> httpx.TransportError:
    """The exception httpx-aiohttp raises for an aiohttp one (its own mapping, not a copy)."""
    with pytest.raises(httpx.TransportError) as caught, map_aiohttp_exceptions():
        try:
            raise aiohttp_error.__cause__ or aiohttp_error
        except Exception as cause:
            raise aiohttp_error from cause
    return caught.value


def test_the_aiohttp_cause_decides_not_the_httpx_class() -> None:
    # DNS cannot fail on demand on loopback: the exceptions are aiohttp's own, built as its
    # connector builds them, and mapped by httpx-aiohttp as in production.
    key: Any = type("Key", (), {"host": "llm.internal", "port": 443, "ssl": True})()
    dns = _mapped(aiohttp.ClientConnectorDNSError(key, socket.gaierror(socket.EAI_NONAME, "Name or service not known")))
    refused = _mapped(aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connect call failed")))
    connect_timeout = _mapped(aiohttp.ConnectionTimeoutError("Connection timeout to host"))
    read_timeout = _mapped(aiohttp.SocketTimeoutError("Timeout on reading data from socket"))
    dropped = _mapped(aiohttp.ServerDisconnectedError())

    assert all(isinstance(e, httpx.ConnectTimeout) for e in (dns, refused, connect_timeout, dropped))
    assert [why_no_response(e) for e in (dns, refused, connect_timeout, read_timeout, dropped)] == [
        NoResponse.DNS, NoResponse.REFUSED, NoResponse.CONNECT_TIMEOUT, NoResponse.TIMEOUT, NoResponse.OTHER,
    ]  # fmt: skip
