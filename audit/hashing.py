"""Keyed hashes of prompts and responses: HMAC-SHA-256 under AUDIT_HASH_KEY, never the text.

A plain SHA-256 of a short secret (an SSN, a phone number) can be brute-forced by anyone who
can read the table; a keyed hash cannot without the key, and still matches the same text
across users and time. Each row stores the id of the key that hashed it, so keys can rotate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from django.conf import settings


def hash_keys() -> list[tuple[str, bytes]]:
    """The current key first, then retired ones (rows keep the id of the key that hashed them)."""
    return [settings.AUDIT_HASH_KEY, *settings.AUDIT_HASH_OLD_KEYS]


def keyed_hash(text: str, *, secret: bytes | None = None) -> str:
    key = secret if secret is not None else settings.AUDIT_HASH_KEY[1]
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prompt_text(body: dict[str, Any]) -> str:
    """The text `audit_match` can be asked about: what the user typed in this request.

    For chat, the last `user` message (clients resend the history, so every user message is
    the last one in the request that first sent it); text parts are joined by newlines. For
    embeddings, the input string, or a list of strings joined by newlines.
    """
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _content_text(message.get("content"))
        return ""
    value = body.get("input")
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "\n".join(value)
    if value is not None:
        return json.dumps(value, separators=(",", ":"))
    return ""
