"""The OpenAI-compatible family: OpenAI itself, Azure OpenAI, vLLM and Ollama's /v1.

They share the wire format, so they share one implementation; subclasses only differ in
where the request goes and how it authenticates. The wire format being the gateway's own,
translation is small: stream frames pass through, `[DONE]` ends the stream.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

from .base import Operation, UpstreamError
from .http import HttpAdapter
from .sse import SSEvent


class ChunkStream:
    """OpenAI's own stream: each `data:` frame is a chunk; an `error` frame fails the stream."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.done = False

    def feed(self, event: SSEvent) -> list[dict[str, Any]]:
        if event.data == "[DONE]":
            self.done = True
            return []
        try:
            chunk = json.loads(event.data)
        except ValueError as exc:
            raise UpstreamError(f"{self.provider} sent a stream event that is not JSON", status=502) from exc
        if isinstance(chunk, dict) and "error" in chunk:
            error = chunk["error"]
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            raise UpstreamError(f"{self.provider} reported an error mid-stream: {message}", status=502)
        return [chunk]

    def close(self) -> list[dict[str, Any]]:
        return []


class OpenAICompatibleAdapter(HttpAdapter):
    kind = "openai"
    label = "OpenAI"
    operations = frozenset({Operation.CHAT, Operation.CHAT_STREAM, Operation.EMBEDDINGS})

    def url(self, path: str, body: dict[str, Any]) -> str:
        return self.backend.base_url.rstrip("/") + path

    def headers(self) -> dict[str, str]:
        credential = self.backend.credential()
        return {"Authorization": f"Bearer {credential}"} if credential else {}

    def prepare(self, body: dict[str, Any]) -> dict[str, Any]:
        return body

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        payload = self.prepare(body)
        return await self.post_json(self.url("/chat/completions", payload), payload, self.headers())

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        payload = self.prepare(body)
        return await self.post_json(self.url("/embeddings", payload), payload, self.headers())

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        payload = self.prepare(body)
        return self.stream(self.url("/chat/completions", payload), payload, self.headers(), ChunkStream(self.label))


class _SystemRoleOnly(OpenAICompatibleAdapter):
    """Self-hosted servers render messages through the model's chat template, which knows
    `system` but usually not OpenAI's newer `developer` role; send those as `system`."""

    def prepare(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not any(_is_developer(m) for m in messages):
            return body
        return {**body, "messages": [{**m, "role": "system"} if _is_developer(m) else m for m in messages]}


def _is_developer(message: Any) -> bool:
    # Pass-through fields are not validated (an embeddings body may carry anything).
    return isinstance(message, dict) and message.get("role") == "developer"


class VLLMAdapter(_SystemRoleOnly):
    kind = "vllm"
    label = "vLLM"


class OllamaAdapter(_SystemRoleOnly):
    """Ollama's OpenAI-compatible endpoint; `base_url` is e.g. http://127.0.0.1:11434/v1."""

    kind = "ollama"
    label = "Ollama"


class AzureCredentials(HttpAdapter):
    """Azure OpenAI's two ways in, for every Azure kind: a Microsoft Entra token when the backend
    names one (`options.entra_token_env`), else the resource key in `api-key`."""

    def _entra_token(self) -> str | None:
        token_env = self.backend.options.get("entra_token_env")
        return (os.environ.get(token_env) or None) if token_env else None

    def headers(self) -> dict[str, str]:
        if token := self._entra_token():
            return {"Authorization": f"Bearer {token}"}
        credential = self.backend.credential()
        return {"api-key": credential} if credential else {}

    def secrets(self) -> list[str]:
        token = self._entra_token()
        return [*super().secrets(), *([token] if token else [])]


class AzureOpenAIAdapter(AzureCredentials, OpenAICompatibleAdapter):
    """Azure OpenAI: deployment-based URLs, `api-version` query, `api-key` header.

    `base_url` is the resource endpoint (https://NAME.openai.azure.com); the model's
    `upstream_model` is the deployment name. With `options.entra_token_env` set, an Entra ID
    bearer token from that variable is sent instead of the key.
    """

    kind = "azure_openai"
    label = "Azure OpenAI"
    default_api_version = "2024-10-21"

    def url(self, path: str, body: dict[str, Any]) -> str:
        base = self.backend.base_url.rstrip("/")
        if base.endswith("/openai"):
            base = base[: -len("/openai")]
        deployment = body.get("model", "")
        version = self.backend.options.get("api_version", self.default_api_version)
        return f"{base}/openai/deployments/{deployment}{path}?api-version={version}"

