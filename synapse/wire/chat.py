"""The chat-completions door: OpenAI's own format, which is also the canonical one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.http import HttpResponse

from synapse.errors import GatewayError, error_body, error_response

from .base import StreamEncoder, Wire, sse


class ChatEncoder(StreamEncoder):
    def __init__(self, *, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage

    def chunk(self, chunk: dict[str, Any]) -> Iterable[bytes]:
        # The usage-only chunk (empty choices) was asked for upstream for the gateway's own
        # accounting; the client sees it only if it asked too.
        if not chunk.get("choices") and not self.include_usage:
            return ()
        chunk["model"] = self.model
        if not self.include_usage:
            chunk.pop("usage", None)
        return (sse(chunk),)

    def finish(self) -> Iterable[bytes]:
        return (b"data: [DONE]\n\n",)

    def error(self, exc: GatewayError) -> Iterable[bytes]:
        # An error event and no [DONE]: the SDK raises instead of returning a truncated answer.
        return (sse(error_body(message=exc.message, type=exc.type, code=exc.code)),)


class ChatWire(Wire):
    endpoint = "chat.completions"

    def to_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return body  # already canonical; the pipeline validates it like every door's result

    def from_chat(self, completion: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        return completion

    def encoder(self, *, request: dict[str, Any], model: str, request_id: str) -> StreamEncoder:
        options = request.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return ChatEncoder(model=model, include_usage=include_usage)

    def error_response(self, exc: GatewayError, *, request_id: str) -> HttpResponse:
        return error_response(exc, request_id=request_id)
