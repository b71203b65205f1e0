"""Request id on every response (errors included), assigned before anything else runs."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


# Django's `get_response`: sync or async, told apart at runtime by `iscoroutinefunction`.
GetResponse = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]


def request_id_middleware(get_response: GetResponse) -> GetResponse:
    # The id is always ours: a client-supplied one would let callers forge audit correlations.
    if iscoroutinefunction(get_response):
        get_async = cast(Callable[[HttpRequest], Awaitable[HttpResponseBase]], get_response)

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            request_id = request.synapse_request_id = new_request_id()  # type: ignore[attr-defined]  # ours, read with getattr
            response = await get_async(request)
            response.setdefault("x-request-id", request_id)
            return response

        markcoroutinefunction(middleware)
        return middleware

    get_sync = cast(Callable[[HttpRequest], HttpResponseBase], get_response)

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        request_id = request.synapse_request_id = new_request_id()  # type: ignore[attr-defined]  # ours, read with getattr
        response = get_sync(request)
        response.setdefault("x-request-id", request_id)
        return response

    return sync_middleware


# Django's middleware capability flags are plain attributes on the factory function.
request_id_middleware.sync_capable = True  # type: ignore[attr-defined]  # Django's capability flag
request_id_middleware.async_capable = True  # type: ignore[attr-defined]  # Django's capability flag
