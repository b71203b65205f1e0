"""The one instance of each door's wire (they are stateless), and which door a path is."""

from __future__ import annotations

from .base import Wire
from .chat import ChatWire
from .messages import MessagesWire
from .responses import ResponsesWire

CHAT, RESPONSES, MESSAGES = ChatWire(), ResponsesWire(), MessagesWire()


def wire_for_path(path: str) -> Wire:
    """The door a path belongs to, for answers made outside its view (a bad host, a cut at shutdown)."""
    if path.startswith("/v1/messages"):
        return MESSAGES
    return RESPONSES if path.startswith("/v1/responses") else CHAT
