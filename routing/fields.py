"""The canonical request's fields: what the gateway may send a backend.

Every door's request becomes an OpenAI chat-completions (or embeddings) body before it is
governed, and adapters translate from that body only; a field outside these sets is refused at
the door (see `dlp/fields.py`, which says how DLP treats each one) unless a backend's
`extra_fields` allowlist names it — and template controls are never allowed there.
"""

from __future__ import annotations

import re
from typing import Any

# The canonical chat-completions body (OpenAI's create parameters).
CHAT_TEXT = frozenset({"messages"})
CHAT_DATA = frozenset(
    {
        "tools", "functions", "tool_choice", "function_call", "response_format", "stop", "user", "metadata",
        "prediction", "logit_bias", "web_search_options", "audio", "prompt_cache_key", "safety_identifier",
        "stream_options", "modalities",
    }
)  # fmt: skip
CHAT_NON_TEXT = frozenset(
    {
        "model", "stream", "n", "temperature", "top_p", "max_tokens", "max_completion_tokens",
        "presence_penalty", "frequency_penalty", "seed", "logprobs", "top_logprobs",
        "parallel_tool_calls", "reasoning_effort", "service_tier", "store", "verbosity",
    }
)  # fmt: skip
CHAT_FIELDS = CHAT_TEXT | CHAT_DATA | CHAT_NON_TEXT

# A message's fields; everything in a message is scanned (role is an enumeration).
MESSAGE_FIELDS = frozenset(
    {"role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio", "reasoning_content"}
)

EMBEDDINGS_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})

# Not scanned by name: the model is replaced by the backend's own name before forwarding.
NOT_SCANNED = frozenset({"model"})

# Names that switch or feed a chat template (vLLM, TGI, llama.cpp, SGLang): never forwarded,
# whatever a backend's allowlist says.
_TEMPLATE = re.compile(r"template|generation_prompt|continue_final_message|add_special_tokens|documents", re.IGNORECASE)


def extra_field_problem(name: Any) -> str | None:
    """Why `name` may not be on a backend's extra-field allowlist, or None if it may."""
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
        return "an extra field is a lower-case parameter name (letters, digits, '_')"
    if _TEMPLATE.search(name):
        return f"'{name}' controls the chat template, which could drop the key's bound system prompt"
    if name in CHAT_FIELDS | EMBEDDINGS_FIELDS:
        return f"'{name}' is a standard field; only fields the gateway does not know need listing"
    return None
