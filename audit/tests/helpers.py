"""Shared by the audit tests: in-process /v1 calls and a tamperer with database powers."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connections, transaction
from django.test import AsyncClient

from audit.models import AuditEvent
from audit.testing import triggers_suspended
from tests.roles import OWNER_ALIAS

CHAT = "/v1/chat/completions"


def call(method: str, path: str, key: str | None = None, body: Any = None, raw: bytes | None = None) -> Any:
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    data = raw if raw is not None else (json.dumps(body) if body is not None else "")
    return async_to_sync(getattr(AsyncClient(), method))(path, data=data, content_type="application/json", headers=headers)


def chat(key: str | None, content: str = "hello", model: str = "mock-small", **extra: Any) -> Any:
    return call("post", CHAT, key, {"model": model, "messages": [{"role": "user", "content": content}], **extra})


def read_stream(response: Any) -> str:
    async def collect() -> bytes:
        return b"".join([part async for part in response.streaming_content])

    return async_to_sync(collect)().decode()


def request_rows() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type="request").order_by("seq"))


def as_superuser(sql: str, params: list[Any] | None = None) -> None:
    """What someone who controls the database can do: write past the append-only triggers.
    As the tables' owner (tests/roles.py), so the test must commit its rows (`@owner_db`)."""
    owner = connections[OWNER_ALIAS]
    with transaction.atomic(using=OWNER_ALIAS), triggers_suspended(owner), owner.cursor() as cursor:
        cursor.execute(sql, params)
