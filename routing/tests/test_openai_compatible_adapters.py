"""The OpenAI-compatible adapters against a fake upstream over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_aiohttp import HttpxAiohttpClient

from routing.adapters import BackendConfig, UpstreamError
from routing.adapters.openai_compat import AzureOpenAIAdapter, OllamaAdapter, OpenAICompatibleAdapter
from tests.fakes.base import Reply
from tests.fakes.openai import FakeOpenAI


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()


def run(coro: Any) -> Any:
    async def with_client() -> Any:
        async with httpx.AsyncClient() as client:
            return await coro(client)

    return asyncio.run(with_client())


def backend(kind: str, base_url: str, **extra: Any) -> BackendConfig:
    return BackendConfig(name=kind, kind=kind, base_url=base_url, location="cloud", **extra)


BODY = {"model": "m", "messages": [{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "hi"}]}


def test_openai_sends_the_bearer_credential_and_keeps_the_developer_role(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-test-123")
    config = backend("openai", f"{fake.base_url}/v1", api_key_env="TEST_UPSTREAM_KEY")
    result = run(lambda c: OpenAICompatibleAdapter(client=c, backend=config, default_timeout=5).chat(BODY))
    assert result["choices"][0]["message"]["content"] == "echo: hi"
    [received] = fake.received
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == "Bearer sk-test-123"
    assert received.body["messages"][0]["role"] == "developer"


def test_ollama_sends_developer_messages_as_system(fake: FakeOpenAI) -> None:
    config = backend("ollama", f"{fake.base_url}/v1")
    run(lambda c: OllamaAdapter(client=c, backend=config, default_timeout=5).chat(BODY))
    assert [m["role"] for m in fake.received[0].body["messages"]] == ["system", "user"]
    assert "authorization" not in fake.received[0].headers


def test_azure_uses_the_deployment_url_api_version_and_api_key_header(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_AZURE_KEY", "azure-secret")
    config = backend("azure_openai", fake.base_url, api_key_env="TEST_AZURE_KEY", options={"api_version": "2024-10-21"})
    body = {**BODY, "model": "my-gpt4o-deployment"}
    run(lambda c: AzureOpenAIAdapter(client=c, backend=config, default_timeout=5).chat(body))
    [received] = fake.received
    assert received.path == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    assert received.query == {"api-version": ["2024-10-21"]}
    assert received.headers["api-key"] == "azure-secret" and "authorization" not in received.headers


def test_azure_streams(fake: FakeOpenAI) -> None:
    config = backend("azure_openai", fake.base_url)

    async def collect(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        adapter = AzureOpenAIAdapter(client=client, backend=config, default_timeout=5)
        body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
        return [chunk async for chunk in adapter.chat_stream(body)]

    chunks = run(collect)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "echo: hi"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize(
    ("status", "client_status", "retryable"),
    [(400, 400, False), (401, 502, False), (429, 429, True), (500, 502, True), (503, 503, True)],
)
def test_provider_errors_map_to_gateway_statuses_without_leaking_credentials(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, status: int, client_status: int, retryable: bool
) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-very-secret")
    fake.fail_next(Reply(status=status, body={"error": {"message": "provider says no", "type": "x"}}))
    config = backend("openai", f"{fake.base_url}/v1", api_key_env="TEST_UPSTREAM_KEY")
    with pytest.raises(UpstreamError) as caught:
        run(lambda c: OpenAICompatibleAdapter(client=c, backend=config, default_timeout=5).chat(BODY))
    assert (caught.value.status, caught.value.retryable) == (client_status, retryable)
    assert "sk-very-secret" not in caught.value.message


def test_a_slow_upstream_times_out_as_504(fake: FakeOpenAI) -> None:
    fake.fail_next(Reply(body={}, delay=1.5))
    config = backend("vllm", f"{fake.base_url}/v1", timeout=0.3)
    with pytest.raises(UpstreamError) as caught:
        run(lambda c: OpenAICompatibleAdapter(client=c, backend=config, default_timeout=5).chat(BODY))
    assert caught.value.status == 504


def test_an_unreachable_upstream_is_a_retryable_502() -> None:
    config = backend("vllm", "http://127.0.0.1:9/v1")
    with pytest.raises(UpstreamError) as caught:
        run(lambda c: OpenAICompatibleAdapter(client=c, backend=config, default_timeout=5).chat(BODY))
    assert (caught.value.status, caught.value.retryable) == (502, True)


def run_on_production_client(coro: Any) -> Any:
    """The same, on the client the gateway really uses (httpx on aiohttp), which reports a
    refused connection as a connect timeout."""

    async def with_client() -> Any:
        async with HttpxAiohttpClient() as client:
            return await coro(client)

    return asyncio.run(with_client())


@pytest.mark.parametrize("stream", [False, True])
def test_a_refused_connection_is_unreachable_not_a_timeout_on_the_production_client(stream: bool) -> None:
    config = backend("vllm", "http://127.0.0.1:9/v1")

    async def call(client: httpx.AsyncClient) -> Any:
        adapter = OpenAICompatibleAdapter(client=client, backend=config, default_timeout=5)
        if stream:
            return [chunk async for chunk in adapter.chat_stream({**BODY, "stream": True})]
        return await adapter.chat(BODY)

    with pytest.raises(UpstreamError) as caught:
        run_on_production_client(call)
    # 502 + retryable is what makes the dispatcher retry it; a 504 would be failed over untried.
    assert (caught.value.status, caught.value.retryable, caught.value.code) == (502, True, "upstream_unreachable")


def test_a_slow_upstream_is_still_a_timeout_on_the_production_client(fake: FakeOpenAI) -> None:
    fake.fail_next(Reply(body={}, delay=1.5))
    config = backend("vllm", f"{fake.base_url}/v1", timeout=0.3)
    with pytest.raises(UpstreamError) as caught:
        run_on_production_client(lambda c: OpenAICompatibleAdapter(client=c, backend=config, default_timeout=5).chat(BODY))
    assert (caught.value.status, caught.value.code) == (504, "upstream_timeout")


def test_a_stream_broken_before_its_first_chunk_can_be_retried(fake: FakeOpenAI) -> None:
    fake.fail_next(Reply(chunks=[b'data: {"id": "x", "choices": []}\n\n'] * 3, drop_after=0))
    config = backend("vllm", f"{fake.base_url}/v1")

    async def collect(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        adapter = OpenAICompatibleAdapter(client=client, backend=config, default_timeout=5)
        return [chunk async for chunk in adapter.chat_stream({**BODY, "stream": True})]

    with pytest.raises(UpstreamError) as caught:
        run_on_production_client(collect)
    assert (caught.value.status, caught.value.retryable) == (502, True)


def test_an_echoed_credential_is_redacted(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenAI-compatible servers quote the offending input back in a 400's message.
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-very-secret-value")
    message = "Invalid header value 'Bearer sk-very-secret-value'"
    fake.fail_next(Reply(status=400, body={"error": {"message": message, "type": "invalid_request_error"}}))
    config = backend("openai", f"{fake.base_url}/v1", api_key_env="TEST_UPSTREAM_KEY")
    with pytest.raises(UpstreamError) as caught:
        run(lambda c: OpenAICompatibleAdapter(client=c, backend=config, default_timeout=5).chat(BODY))
    assert caught.value.status == 400
    assert "sk-very-secret-value" not in str(caught.value) and "[redacted]" in caught.value.message


def test_azure_sends_an_entra_token_instead_of_the_key_when_configured(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_AZURE_KEY", "azure-secret")
    monkeypatch.setenv("TEST_AZURE_TOKEN", "eyJ0eXAiOiJKV1Qi.entra-token")
    fake.fail_next(
        Reply(status=400, body={"error": {"message": "bad token eyJ0eXAiOiJKV1Qi.entra-token", "type": "invalid_request_error"}})
    )
    config = backend("azure_openai", fake.base_url, api_key_env="TEST_AZURE_KEY", options={"entra_token_env": "TEST_AZURE_TOKEN"})
    body = {**BODY, "model": "my-deployment"}
    with pytest.raises(UpstreamError) as caught:
        run(lambda c: AzureOpenAIAdapter(client=c, backend=config, default_timeout=5).chat(body))
    assert "entra-token" not in caught.value.message
    run(lambda c: AzureOpenAIAdapter(client=c, backend=config, default_timeout=5).chat(body))
    received = fake.received[-1]
    assert received.headers["authorization"] == "Bearer eyJ0eXAiOiJKV1Qi.entra-token"
    assert "api-key" not in received.headers
