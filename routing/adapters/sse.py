"""Server-sent events, parsed from an httpx byte stream (shared by every streaming adapter)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx

from .base import UpstreamError


@dataclass(slots=True)
class SSEvent:
    event: str
    data: str


async def iter_sse(response: httpx.Response) -> AsyncGenerator[SSEvent, None]:
    """Yield events per the SSE spec: fields until a blank line; multi-line data joined by \\n."""
    event = ""
    data: list[str] = []
    buffer = b""
    async for chunk in response.aiter_bytes():
        buffer += chunk
        while True:
            cut = _line_end(buffer)
            if cut is None:
                break
            end, width = cut
            line = buffer[:end].decode("utf-8")
            buffer = buffer[end + width :]
            if not line:
                if data:
                    yield SSEvent(event=event or "message", data="\n".join(data))
                event, data = "", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
    if data:
        yield SSEvent(event=event or "message", data="\n".join(data))


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    """Position and width of the first line terminator (CRLF, LF or CR)."""
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r", 0, lf if lf >= 0 else len(buffer))
    if cr < 0:
        return (lf, 1) if lf >= 0 else None
    if cr + 1 == len(buffer):
        return None  # a CRLF may be split across chunks: wait for more bytes
    return cr, 2 if buffer[cr + 1] == 0x0A else 1


def event_json(event: SSEvent, provider: str) -> dict[str, Any]:
    """An event's data as the JSON object providers send; UpstreamError if it is not one."""
    try:
        data = json.loads(event.data)
    except ValueError as exc:
        raise UpstreamError(f"{provider} sent a stream event that is not JSON", status=502) from exc
    if not isinstance(data, dict):
        raise UpstreamError(f"{provider} sent a stream event that is not a JSON object", status=502)
    return data
