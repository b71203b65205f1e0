"""A fake OpenAI-compatible upstream (OpenAI, Azure OpenAI, vLLM, Ollama's /v1).

Speaks the Chat Completions and Embeddings wire format as documented in OpenAI's API
reference and typed in the `openai` SDK (`ChatCompletion`, `ChatCompletionChunk`,
`CreateEmbeddingResponse`): SSE `data:` frames, a final usage chunk with empty `choices`
when `stream_options.include_usage` is set, then `data: [DONE]`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .base import FakeProvider, Received, Reply


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class FakeOpenAI(FakeProvider):
    """Replies `echo: <last user text>`; tokens are counted as whitespace-separated words."""

    reply_prefix = "echo: "

    def __init__(self, *, reply: str | None = None, pieces: list[str] | None = None) -> None:
        super().__init__()
        self.reply = reply  # fixed answer instead of the echo
        self.pieces = pieces  # fixed stream deltas instead of word-by-word
        # Tool calls to answer with, as (name, arguments JSON): the reply text (if any) comes first.
        self.tool_calls: list[tuple[str, str]] = []
        # Reasoning text (vLLM's `reasoning_content`, before the answer) and a refusal, if set.
        self.reasoning: str | None = None
        self.refusal: str | None = None

    def reset(self) -> None:
        super().reset()
        self.reply = None
        self.pieces = None
        self.tool_calls = []
        self.reasoning = None
        self.refusal = None

    @staticmethod
    def _logprob(token: str) -> dict[str, Any]:
        """One `logprobs.content` entry (the chosen token is also its only alternative)."""
        entry = {"token": token, "logprob": -0.25, "bytes": list(token.encode())}
        return {**entry, "top_logprobs": [dict(entry)]}

    def _pieces(self, answer: str) -> list[str]:
        if not answer:
            return []
        if self.pieces is not None:
            return self.pieces
        return [w + " " for w in answer.split(" ")[:-1]] + answer.split(" ")[-1:]

    def answer_for(self, body: dict[str, Any]) -> str:
        if self.reply is not None:
            return self.reply
        last_user = next((_text(m.get("content")) for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        return self.reply_prefix + last_user

    def respond(self, received: Received) -> Reply:
        body = received.body or {}
        if received.path.endswith("/chat/completions"):
            return self._stream(body) if body.get("stream") else self._chat(body)
        if received.path.endswith("/embeddings"):
            return self._embeddings(body)
        return Reply(
            status=404, body={"error": {"message": "not found", "type": "invalid_request_error", "param": None, "code": None}}
        )

    @staticmethod
    def _usage(body: dict[str, Any], answer: str) -> dict[str, int]:
        prompt = sum(len(_text(m.get("content")).split()) for m in body.get("messages", []))
        completion = len(answer.split())
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _calls(self) -> list[dict[str, Any]]:
        return [
            {"id": f"call_fake{i:04d}", "type": "function", "function": {"name": name, "arguments": arguments}}
            for i, (name, arguments) in enumerate(self.tool_calls)
        ]

    def _chat(self, body: dict[str, Any]) -> Reply:
        answer = self.answer_for(body)
        message: dict[str, Any] = {"role": "assistant", "content": answer, "refusal": self.refusal}
        if self.reasoning is not None:
            message["reasoning_content"] = self.reasoning
        if self.tool_calls:
            message = {**message, "content": answer or None, "tool_calls": self._calls()}
        logprobs = None
        if body.get("logprobs"):
            logprobs = {"content": [self._logprob(p) for p in self._pieces(answer)], "refusal": None}
        return Reply(
            body={
                "id": "chatcmpl-fake0001",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": logprobs,
                        "finish_reason": "tool_calls" if self.tool_calls else "stop",
                    }
                ],
                "usage": self._usage(body, answer),
            }
        )

    def _stream(self, body: dict[str, Any]) -> Reply:
        answer = self.answer_for(body)
        if self.tool_calls and self.reply == "":
            answer = ""
        pieces = self._pieces(answer)
        want_logprobs = bool(body.get("logprobs"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {
            "id": "chatcmpl-fake0002",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model"),
            "system_fingerprint": "fp_fake",
        }
        extra = {"usage": None} if include_usage else {}

        def frames() -> Any:
            yield {
                **base,
                **extra,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": "", "refusal": None},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
            for channel, text in (("reasoning_content", self.reasoning), ("refusal", self.refusal)):
                text = text or ""
                for piece in (text[i : i + 5] for i in range(0, len(text), 5)):  # split mid-word on purpose
                    yield {
                        **base,
                        **extra,
                        "choices": [{"index": 0, "delta": {channel: piece}, "logprobs": None, "finish_reason": None}],
                    }
            for piece in pieces:
                logprobs = {"content": [self._logprob(piece)], "refusal": None} if want_logprobs else None
                yield {
                    **base,
                    **extra,
                    "choices": [{"index": 0, "delta": {"content": piece}, "logprobs": logprobs, "finish_reason": None}],
                }
            for index, call in enumerate(self._calls()):
                # OpenAI's shape: the first delta of a call names it, later ones add arguments.
                arguments = call["function"]["arguments"]
                head = {
                    "index": index,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""},
                }
                for delta in (
                    head,
                    {"index": index, "function": {"arguments": arguments[: len(arguments) // 2]}},
                    {"index": index, "function": {"arguments": arguments[len(arguments) // 2 :]}},
                ):
                    yield {
                        **base,
                        **extra,
                        "choices": [{"index": 0, "delta": {"tool_calls": [delta]}, "logprobs": None, "finish_reason": None}],
                    }
            finish = "tool_calls" if self.tool_calls else "stop"
            yield {**base, **extra, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]}
            if include_usage:
                yield {**base, "choices": [], "usage": self._usage(body, answer)}

        chunks = [b"data: " + json.dumps(frame).encode() + b"\n\n" for frame in frames()] + [b"data: [DONE]\n\n"]
        return Reply(chunks=chunks)

    def _embeddings(self, body: dict[str, Any]) -> Reply:
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) and inputs and isinstance(inputs[0], str) else [inputs]
        data = [{"object": "embedding", "index": i, "embedding": [0.1 * (i + 1), 0.2, 0.3]} for i, _ in enumerate(items)]
        tokens = sum(len(str(item).split()) for item in items)
        return Reply(
            body={
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
