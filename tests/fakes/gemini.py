"""A fake Gemini API (generativelanguage v1beta), strict where the real one is strict.

Routes: models/{model}:generateContent, :streamGenerateContent (`alt=sse`: unnamed `data:`
events separated by CRLF CRLF, each a whole GenerateContentResponse; without it a JSON array),
:embedContent and :batchEmbedContents. Shapes as in Google's API reference and the google-genai
SDK's types (GenerateContentResponse, Candidate.finishReason, PromptFeedback.blockReason,
UsageMetadata); errors `{"error": {"code", "message", "status", "details"}}` — a wrong key is
400 INVALID_ARGUMENT with reason API_KEY_INVALID, a missing one 403 PERMISSION_DENIED.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from .base import FakeProvider, Received, Reply

ROUTE = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>\w+)$")
REQUEST_FIELDS = {"contents", "systemInstruction", "generationConfig", "tools", "toolConfig", "safetySettings", "cachedContent"}
CONFIG_FIELDS = {
    "maxOutputTokens", "temperature", "topP", "topK", "stopSequences", "candidateCount", "presencePenalty",
    "frequencyPenalty", "seed", "responseMimeType", "responseSchema", "responseJsonSchema", "thinkingConfig",
}  # fmt: skip
PART_FIELDS = {"text", "inlineData", "fileData", "functionCall", "functionResponse"}


@dataclass
class Answer:
    """What the fake model says next. `text=None` echoes the last user text."""

    text: str | None = None
    function_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, args)
    thought_signature: str | None = None  # attached to the first functionCall part, as Gemini 3 does
    finish_reason: str = "STOP"
    block_reason: str | None = None  # promptFeedback.blockReason: no candidates at all
    thoughts_tokens: int = 0
    tool_use_prompt_tokens: int = 0  # what Google's own tools (search, code execution) added to the prompt
    stream_error: int | None = None  # an HTTP-like code sent as an `error` event after the first chunk
    drop_after: int | None = None  # streams: close the connection after this many events


def _error(code: int, status: str, message: str, reason: str | None = None) -> Reply:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}]
    return Reply(status=code, body={"error": error})


def _words(parts: list[dict[str, Any]]) -> int:
    return sum(len(str(part.get("text", "")).split()) for part in parts)


class FakeGemini(FakeProvider):
    def __init__(self, *, api_key: str = "AIza-fake-gemini-credential-0001") -> None:
        super().__init__()
        self.api_key = api_key
        self.answer = Answer()

    def reset(self) -> None:
        super().reset()
        self.answer = Answer()

    def respond(self, received: Received) -> Reply:
        route = ROUTE.match(received.path)
        if route is None:
            return _error(404, "NOT_FOUND", f"The requested URL {received.path} was not found on this server.")
        key = received.headers.get("x-goog-api-key") or (received.query.get("key") or [""])[0]
        if not key:
            return _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers. Please use an API key.")
        if key != self.api_key:
            return _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID")
        model, method = route["model"], route["method"]
        body = received.body if isinstance(received.body, dict) else {}
        if method == "embedContent":
            return self._embed_one(body)
        if method == "batchEmbedContents":
            return self._embed_batch(model, body)
        if method not in ("generateContent", "streamGenerateContent"):
            return _error(404, "NOT_FOUND", f"Method {method} not found")
        if (problem := self._invalid(body)) is not None:
            return problem
        responses = self._responses(model, body)
        if method == "generateContent":
            return Reply(body=self._merged(responses))
        if received.query.get("alt") != ["sse"]:
            return Reply(body=responses)
        frames = [b"data: " + json.dumps(response).encode() + b"\r\n\r\n" for response in responses]
        return Reply(chunks=frames, drop_after=self.answer.drop_after)

    # ── validation ──
    @staticmethod
    def _invalid(body: dict[str, Any]) -> Reply | None:
        def bad(message: str) -> Reply:
            return _error(400, "INVALID_ARGUMENT", message)

        if extra := sorted(set(body) - REQUEST_FIELDS):
            return bad(f'Invalid JSON payload received. Unknown name "{extra[0]}": Cannot find field.')
        if extra := sorted(set(body.get("generationConfig") or {}) - CONFIG_FIELDS):
            return bad(f"Invalid JSON payload received. Unknown name \"{extra[0]}\" at 'generation_config': Cannot find field.")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return bad("* GenerateContentRequest.contents: contents is not specified")
        for position, content in enumerate(contents):
            if content.get("role") not in ("user", "model"):
                return bad(f"Please use a valid role: user, model. (contents[{position}])")
            parts = content.get("parts")
            if not isinstance(parts, list) or not parts:
                return bad(f"* GenerateContentRequest.contents[{position}].parts: contents.parts must not be empty.")
            for part in parts:
                data_fields = set(part) & PART_FIELDS
                if len(data_fields) != 1:
                    return bad(f"* GenerateContentRequest.contents[{position}].parts: exactly one data field is required")
                response = (part.get("functionResponse") or {}).get("response", {})
                if not isinstance(response, dict):
                    return bad("functionResponse.response must be an object")
        for part in (body.get("systemInstruction") or {}).get("parts", []):
            if not part.get("text"):
                return bad("systemInstruction parts must be text")
        return None

    # ── answers ──
    def _responses(self, model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The stream: text in word-sized chunks, then function calls, then finishReason + usage."""
        answer = self.answer
        prompt_tokens = _words((body.get("systemInstruction") or {}).get("parts", [])) + sum(
            _words(content["parts"]) for content in body["contents"]
        )
        common = {"modelVersion": model, "responseId": uuid.uuid4().hex[:22]}
        if answer.block_reason:
            feedback = {"blockReason": answer.block_reason, "safetyRatings": []}
            usage: dict[str, Any] = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
            return [{"promptFeedback": feedback, "usageMetadata": usage, **common}]
        text = answer.text if answer.text is not None else f"echo: {self._last_user_text(body)}"
        parts: list[dict[str, Any]] = []
        words = text.split(" ") if text else []
        for position, word in enumerate(words):
            parts.append({"text": word if position == len(words) - 1 else word + " "})
        for position, (name, args) in enumerate(answer.function_calls):
            part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
            if position == 0 and answer.thought_signature:
                part["thoughtSignature"] = answer.thought_signature
            parts.append(part)
        candidates_tokens = len(words) + sum(len(json.dumps(args).split()) for _, args in answer.function_calls)
        responses = []
        # A withheld answer (finishReason SAFETY, ...) comes as a candidate without content.
        pieces: list[dict[str, Any] | None] = [*parts] or [None]
        for position, piece in enumerate(pieces):
            last = position == max(len(parts), 1) - 1
            candidate: dict[str, Any] = {"index": 0}
            if piece is not None:
                candidate["content"] = {"parts": [piece], "role": "model"}
            usage = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
            if last:
                candidate["finishReason"] = answer.finish_reason
                usage = {
                    "promptTokenCount": prompt_tokens,
                    "candidatesTokenCount": candidates_tokens,
                    "totalTokenCount": prompt_tokens + candidates_tokens + answer.thoughts_tokens + answer.tool_use_prompt_tokens,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
                }
                if answer.thoughts_tokens:
                    usage["thoughtsTokenCount"] = answer.thoughts_tokens
                if answer.tool_use_prompt_tokens:
                    usage["toolUsePromptTokenCount"] = answer.tool_use_prompt_tokens
            responses.append({"candidates": [candidate], "usageMetadata": usage, **common})
        if answer.stream_error is not None:
            message = "The model is overloaded. Please try again later."
            error = {"code": answer.stream_error, "message": message, "status": "UNAVAILABLE"}
            responses = [*responses[:1], {"error": error}]
        return responses

    @staticmethod
    def _merged(responses: list[dict[str, Any]]) -> dict[str, Any]:
        """generateContent's single response: the stream's parts joined, the last chunk's metadata."""
        if "error" in responses[-1]:
            return responses[-1]
        last = responses[-1]
        if "candidates" not in last:
            return last
        parts: list[dict[str, Any]] = []
        for response in responses:
            for part in response["candidates"][0].get("content", {}).get("parts", []):
                if "text" in part and parts and "text" in parts[-1] and set(part) == {"text"}:
                    parts[-1] = {"text": parts[-1]["text"] + part["text"]}
                else:
                    parts.append(part)
        candidate = dict(last["candidates"][0])
        if parts:
            candidate["content"] = {"parts": parts, "role": "model"}
        return {**last, "candidates": [candidate]}

    @staticmethod
    def _last_user_text(body: dict[str, Any]) -> str:
        for content in reversed(body["contents"]):
            texts = [part["text"] for part in content["parts"] if "text" in part]
            if content["role"] == "user" and texts:
                return " ".join(texts)
        return ""

    @staticmethod
    def _vector(text: str, dimensions: int | None) -> list[float]:
        digest = hashlib.sha256(text.encode()).digest()
        values = [byte / 255 for byte in digest[:8]]
        return values[:dimensions] if dimensions else values

    def _embed_one(self, body: dict[str, Any]) -> Reply:
        parts = (body.get("content") or {}).get("parts") or []
        if not parts:
            return _error(400, "INVALID_ARGUMENT", "* EmbedContentRequest.content: content is not specified")
        text = " ".join(part.get("text", "") for part in parts)
        return Reply(body={"embedding": {"values": self._vector(text, body.get("outputDimensionality"))}})

    def _embed_batch(self, model: str, body: dict[str, Any]) -> Reply:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _error(400, "INVALID_ARGUMENT", "* BatchEmbedContentsRequest.requests: requests is not specified")
        embeddings = []
        for position, request in enumerate(requests):
            if request.get("model") != f"models/{model}":
                return _error(400, "INVALID_ARGUMENT", f"requests[{position}].model must be models/{model}")
            text = " ".join(part.get("text", "") for part in (request.get("content") or {}).get("parts", []))
            embeddings.append({"values": self._vector(text, request.get("outputDimensionality"))})
        return Reply(body={"embeddings": embeddings})
