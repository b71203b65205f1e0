"""Provider adapters by backend `kind`; `adapter_for` is the only entry point the pipeline uses."""

from __future__ import annotations

from django.conf import settings

from .anthropic import AnthropicAdapter
from .base import Adapter, BackendConfig, Operation, UpstreamError
from .gemini import GeminiAdapter
from .http import shared_client
from .mock import MockAdapter
from .openai_compat import AzureOpenAIAdapter, OllamaAdapter, OpenAICompatibleAdapter, VLLMAdapter
from .openai_responses import AzureOpenAIResponsesAdapter, OpenAIResponsesAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    adapter.kind: adapter
    for adapter in (
        OpenAICompatibleAdapter,
        AzureOpenAIAdapter,
        VLLMAdapter,
        OllamaAdapter,
        MockAdapter,
        AnthropicAdapter,
        GeminiAdapter,
        OpenAIResponsesAdapter,
        AzureOpenAIResponsesAdapter,
    )
}


def adapter_for(backend: BackendConfig) -> Adapter:
    adapter_class = ADAPTERS.get(backend.kind)
    if adapter_class is None:
        raise UpstreamError(f"backend '{backend.name}' has unknown kind '{backend.kind}'", status=502)
    return adapter_class(
        client=shared_client(),
        backend=backend,
        default_timeout=settings.SYNAPSE["UPSTREAM_TIMEOUT"],
    )


__all__ = ["ADAPTERS", "Adapter", "BackendConfig", "Operation", "UpstreamError", "adapter_for"]
