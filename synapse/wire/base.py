"""The interface each /v1 door implements (see the package docstring)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

from django.http import HttpResponse

from synapse.errors import GatewayError


def sse(data: dict[str, Any], *, event: str | None = None) -> bytes:
    """One server-sent event; `event:` names it where the wire format does (Responses, Messages)."""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + payload + b"\n\n"


class StreamEncoder(ABC):
    """Turns one request's canonical chunk stream into the door's own event stream.

    The pipeline calls `chunk` for every `chat.completion.chunk` it releases — after output
    DLP, so text is already redacted, and including the last usage-only chunk (empty
    `choices`, `usage` set) — then exactly one of `finish` (the stream ended normally and is
    audited) or `error` (the gateway stopped it: DLP block, upstream failure, audit failure).
    Each returns the bytes to send, possibly none.
    """

    @abstractmethod
    def chunk(self, chunk: dict[str, Any]) -> Iterable[bytes]: ...

    @abstractmethod
    def finish(self) -> Iterable[bytes]: ...

    @abstractmethod
    def error(self, exc: GatewayError) -> Iterable[bytes]: ...


class Wire(ABC):
    """One door of /v1. Stateless; one instance per door is shared by all requests."""

    endpoint: ClassVar[str]  # what the audit row records, e.g. "responses"

    @abstractmethod
    def to_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """The client's body as a canonical chat-completions body.

        Raises `GatewayError` (built with `synapse.errors.invalid_request`, naming the field
        as `param`) for a malformed body or a feature the gateway refuses. The result must
        pass `synapse.schemas.validate_chat`; `stream: true` is kept when the client streams.
        """

    @abstractmethod
    def from_chat(self, completion: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        """A canonical `chat.completion` (after output DLP, `model` already the client's name)
        as the door's answer; `request` is the client's original body."""

    @abstractmethod
    def encoder(self, *, request: dict[str, Any], model: str, request_id: str) -> StreamEncoder:
        """A fresh encoder for one streamed answer."""

    @abstractmethod
    def error_response(self, exc: GatewayError, *, request_id: str) -> HttpResponse:
        """A refusal in the door's error shape, with `exc.status` and `exc.headers`."""
