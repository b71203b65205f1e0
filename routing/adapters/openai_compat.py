"""The OpenAI-compatible family: OpenAI itself, Azure OpenAI, vLLM and Ollama's /v1.

They share the wire format, so they share one implementation; subclasses only differ in
where the request goes and how it authenticates.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import httpx

from .base import Adapter, UpstreamError
from .http import is_connect_timeout, is_timeout, raise_for_upstream
from .sse import iter_sse


class OpenAICompatibleAdapter(Adapter):
    kind = "openai"
    label = "OpenAI"

    def url(self, path: str, body: dict[str, Any]) -> str:
        return self.backend.base_url.rstrip("/") + path

    def headers(self) -> dict[str, str]:
        credential = self.backend.credential()
        return {"Authorization": f"Bearer {credential}"} if credential else {}

    def prepare(self, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=self.deadlines.connect)

    def _not_reached(self, exc: Exception) -> UpstreamError:
        """A failure before any response: a deadline (504) or a refusal (502), both retryable.

        The production client (httpx on aiohttp) reports a refused connection as a connect
        timeout; `is_timeout` tells them apart, so a backend that is down is retried at once
        rather than reported as slow.
        """
        if is_connect_timeout(exc):
            return UpstreamError(
                f"{self.label} did not accept the connection within {self.deadlines.connect:g} s",
                status=504,
                retryable=True,
                code="upstream_timeout",
            )
        if is_timeout(exc):
            return UpstreamError(
                f"{self.label} did not answer within {self.timeout:g} s", status=504, retryable=True, code="upstream_timeout"
            )
        # The class name only: httpx messages can carry the URL.
        return UpstreamError(
            f"{self.label} is unreachable ({type(exc).__name__})", status=502, retryable=True, code="upstream_unreachable"
        )

    def _fail(self, response: httpx.Response, raw: bytes) -> NoReturn:
        try:
            raise_for_upstream(response, raw, provider=self.label)
        except UpstreamError as exc:
            raise self.scrubbed(exc) from None
        raise UpstreamError(f"{self.label} returned HTTP {response.status_code}", status=502)

    async def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = self.prepare(body)
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.client.post(
                    self.url(path, payload), json=payload, headers=self.headers(), timeout=self._timeout()
                )
                raw = await response.aread()
        except (TimeoutError, httpx.TransportError) as exc:
            raise self._not_reached(exc) from exc
        if response.status_code >= 400:
            self._fail(response, raw)
        try:
            result: dict[str, Any] = json.loads(raw)
        except ValueError as exc:
            raise UpstreamError(f"{self.label} returned a body that is not JSON", status=502) from exc
        return result

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._post_json("/chat/completions", body)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._post_json("/embeddings", body)

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        payload = self.prepare(body)
        request = self.client.build_request(
            "POST", self.url("/chat/completions", payload), json=payload, headers=self.headers(), timeout=self._timeout()
        )
        try:
            response = await self.client.send(request, stream=True)
        except (TimeoutError, httpx.TransportError) as exc:
            raise self._not_reached(exc) from exc
        try:
            if response.status_code >= 400:
                self._fail(response, await response.aread())
            async for event in iter_sse(response):
                if event.data == "[DONE]":
                    return
                try:
                    chunk = json.loads(event.data)
                except ValueError as exc:
                    raise UpstreamError(f"{self.label} sent a stream event that is not JSON", status=502) from exc
                if isinstance(chunk, dict) and "error" in chunk:
                    error = chunk["error"]
                    message = error.get("message", "") if isinstance(error, dict) else str(error)
                    raise self.scrubbed(UpstreamError(f"{self.label} reported an error mid-stream: {message}", status=502))
                yield chunk
        except httpx.TimeoutException as exc:
            if is_timeout(exc):
                raise UpstreamError(
                    f"{self.label} stalled for more than {self.timeout:g} s", status=504, retryable=True, code="upstream_timeout"
                ) from exc
            raise self._broken(exc) from exc
        except httpx.TransportError as exc:
            raise self._broken(exc) from exc
        finally:
            await response.aclose()

    def _broken(self, exc: Exception) -> UpstreamError:
        # Retryable: the dispatcher only retries or fails over before the first chunk went out.
        return UpstreamError(
            f"{self.label} broke the stream ({type(exc).__name__})", status=502, retryable=True, code="upstream_stream_broken"
        )


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


class AzureOpenAIAdapter(OpenAICompatibleAdapter):
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

    def _entra_token(self) -> str | None:
        token_env = self.backend.options.get("entra_token_env")
        if not token_env:
            return None
        return os.environ.get(token_env) or None

    def headers(self) -> dict[str, str]:
        if token := self._entra_token():
            return {"Authorization": f"Bearer {token}"}
        credential = self.backend.credential()
        return {"api-key": credential} if credential else {}

    def secrets(self) -> list[str]:
        token = self._entra_token()
        return [*super().secrets(), *([token] if token else [])]
