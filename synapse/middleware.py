"""Request id on every response (errors included), assigned before anything else runs."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def request_id_middleware(
    get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] | Callable[[HttpRequest], HttpResponseBase],
) -> Callable[[HttpRequest], object]:
    # The id is always ours: a client-supplied one would let callers forge audit correlations.
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            request.synapse_request_id = new_request_id()  # type: ignore[attr-defined]
            response = await get_response(request)  # type: ignore[misc]
            response.setdefault("x-request-id", request.synapse_request_id)  # type: ignore[attr-defined]
            return response

        markcoroutinefunction(middleware)
        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        request.synapse_request_id = new_request_id()  # type: ignore[attr-defined]
        response = get_response(request)
        response.setdefault("x-request-id", request.synapse_request_id)  # type: ignore[attr-defined,union-attr]
        return response  # type: ignore[return-value]

    return sync_middleware


request_id_middleware.sync_capable = True  # type: ignore[attr-defined]
request_id_middleware.async_capable = True  # type: ignore[attr-defined]
