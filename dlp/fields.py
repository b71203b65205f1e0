"""The field model: every field of a canonical request, and how DLP treats it.

Every door (chat completions, Responses, Messages) is translated into one canonical OpenAI
chat-completions body before the pipeline governs it, so this model covers every door. Each
field of that body (and of an embeddings body) is one of:

- text: prose the model reads (message content, parts, refusals, reasoning);
- data: structured values that reach the model or the provider and can carry a value (tool
  names, descriptions and JSON schemas, legacy `functions`, `response_format`, `stop`, `user`,
  `metadata`, `prediction`, `tool_choice`, `logit_bias` keys, ...): every string in them, and
  every object key, is scanned like text;
- non-text: numbers, booleans and enumerations (`temperature`, `n`, `stream`, ...). The schema
  checks their type; if a string turns up in one anyway, it is scanned as data.

Nothing is exempt by name except `model` (matched against the key's allowlist and replaced
with the backend's name) and binary payloads DLP cannot read (base64 images, audio, files:
refused for sensitive keys, see `non_text_parts`).

Fields outside the model are not forwarded: the request is refused with 400
`unknown_parameter` naming the field (for chat and embeddings alike: dropping silently would
change what the caller asked for without telling them). A backend may allow extra fields by
name (`extra_fields` in the routing file, e.g. vLLM's `top_k`); those are scanned as data.
Template controls are never allowed: a client-supplied chat template can render the
conversation without the key's bound system prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from routing.fields import (  # noqa: F401 - the field model's vocabulary, re-exported for DLP's callers
    CHAT_DATA,
    CHAT_FIELDS,
    CHAT_NON_TEXT,
    CHAT_TEXT,
    EMBEDDINGS_FIELDS,
    MESSAGE_FIELDS,
    NOT_SCANNED,
    extra_field_problem,
)


def unknown_fields(body: dict[str, Any], *, embeddings: bool, extra: Iterable[str] = ()) -> list[str]:
    """The fields of `body` the gateway would not forward, as 'name' or 'messages[i].name'."""
    allowed = {name for name in extra if extra_field_problem(name) is None}
    known = EMBEDDINGS_FIELDS if embeddings else CHAT_FIELDS
    out = [name for name in body if name not in known and name not in allowed]
    if not embeddings and isinstance(body.get("messages"), list):
        for index, message in enumerate(body["messages"]):
            if isinstance(message, dict):
                out.extend(f"messages[{index}].{name}" for name in message if name not in MESSAGE_FIELDS)
    return out


# ── walking structured data ──

Scan = Callable[[str], str]


def _binary(parent: str, key: str, value: Any) -> bool:
    """A payload DLP cannot read as text (reported as unreadable content, not scanned)."""
    if not isinstance(value, str):
        return False
    if key == "url" and parent == "image_url":
        return value.startswith("data:")
    return (key == "data" and parent in ("input_audio", "audio")) or key == "file_data"


def rewrite(value: Any, scan: Scan, parent: str = "") -> Any:
    """`value` with `scan` applied to every string and object key in it; the same object when
    nothing changed (so a clean request is forwarded as it came)."""
    if isinstance(value, str):
        return scan(value) if value else value
    if isinstance(value, list):
        items = [rewrite(item, scan, parent) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        changed = False
        for key, item in value.items():
            new_key = scan(key) if isinstance(key, str) and key else key
            new_item = item if _binary(parent, key, item) else rewrite(item, scan, key)
            changed = changed or new_key != key or new_item is not item
            out[new_key] = new_item
        return out if changed else value
    return value  # numbers, booleans, null


def rewrite_body(body: dict[str, Any], scan: Scan) -> dict[str, Any]:
    """Every field of a request body except those NOT_SCANNED; the same dict if clean."""
    out = {key: (value if key in NOT_SCANNED else rewrite(value, scan, key)) for key, value in body.items()}
    return out if any(out[k] is not body[k] for k in body) else body
