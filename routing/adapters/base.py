"""The one interface every provider adapter implements.

Clients always speak OpenAI's API. An adapter receives an OpenAI-shaped request body (the
bound system prompt already applied, DLP already done, `model` set to the upstream name)
and returns OpenAI-shaped results: a `chat.completion` dict, an async iterator of
`chat.completion.chunk` dicts, or an embeddings `list` dict. Translation to and from a
provider's own wire format (Anthropic Messages, Gemini generateContent, ...) lives entirely
inside its adapter, so the pipeline never learns which provider it is talking to.
"""

from __future__ import annotations

import enum
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """An immutable snapshot of a `routing.Backend` row, safe to share across tasks."""

    name: str
    kind: str
    base_url: str
    location: str  # "on_prem" | "cloud"
    api_key_env: str = ""
    timeout: float | None = None  # total seconds; None → SYNAPSE_UPSTREAM_TIMEOUT
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific, e.g. azure api_version
    connect_timeout: float | None = None  # None → min(5 s, total)
    first_byte_timeout: float | None = None  # streams: until the first chunk; None → total
    max_retries: int = 1  # further tries of this backend on a retryable failure

    @property
    def is_on_prem(self) -> bool:
        return self.location == "on_prem"

    def credential(self) -> str | None:
        """The provider secret, read from the environment at call time (never stored in the DB)."""
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None


class UpstreamError(Exception):
    """A provider call that failed. `status` is what the client should get (502/503/504/4xx).

    `retryable` says whether trying again (or another backend) can help: connection errors,
    429 and 5xx can; a 400 from the provider cannot.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        retryable: bool = False,
        upstream_status: int | None = None,
        code: str = "upstream_error",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.upstream_status = upstream_status
        self.code = code
        self.retry_after = retry_after


class Operation(enum.StrEnum):
    """What a caller can ask of a backend."""

    CHAT = "chat"
    CHAT_STREAM = "chat_stream"
    EMBEDDINGS = "embeddings"


class Adapter:
    """Base class: one subclass per provider `kind`, constructed per call (it is cheap).

    Every API the gateway serves (chat completions, embeddings, and the doors that translate
    other APIs into chat) reaches a backend through these three calls. `operations` says which
    of them a kind can serve, so a caller can refuse an operation in its own API's shape
    before it spends anything on the request; `label` is the provider's name for messages.
    """

    kind: ClassVar[str]
    label: ClassVar[str]
    operations: ClassVar[frozenset[Operation]] = frozenset()

    def __init__(self, *, client: httpx.AsyncClient, backend: BackendConfig, default_timeout: float) -> None:
        self.client = client
        self.backend = backend
        self.timeout = backend.timeout or default_timeout

    @classmethod
    def supports(cls, operation: Operation) -> bool:
        return operation in cls.operations

    def _unsupported(self, operation: Operation) -> UpstreamError:
        return UpstreamError(f"backend kind '{self.kind}' does not support {operation.value}", status=400)

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """Non-streaming chat: return an OpenAI `chat.completion` dict, `usage` included."""
        raise self._unsupported(Operation.CHAT)

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Streaming chat: OpenAI `chat.completion.chunk` dicts.

        The body has `stream: true` and `stream_options.include_usage: true`; the last chunk
        carries `usage` with empty `choices` (the pipeline strips it if the client did not
        ask for it). The iterator must release the upstream connection when closed early.
        A request the adapter cannot translate may raise here, before iteration starts.
        """
        raise self._unsupported(Operation.CHAT_STREAM)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        """Return an OpenAI embeddings `list` dict, `usage` included."""
        raise self._unsupported(Operation.EMBEDDINGS)
