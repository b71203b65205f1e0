"""What synapse/lean_asgi.py relies on in Django's private handler internals, and that the lean
handler still answers. If a Django upgrade fails here, fix that one module."""

from __future__ import annotations

import asyncio
import hashlib
import inspect

import httpx
import pytest
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpResponse

from audit.models import AuditEvent
from synapse.lean_asgi import ApiASGIHandler

# sha256 of inspect.getsource(ASGIHandler.handle) in Django 5.2.19, which `_handle_lean` copies.
HANDLE_FINGERPRINT = "98faeb5bef800331e6a8002fbc96b30e4122a23438ae45a047190a531ea11323"


def test_it_copies_the_asgi_handle_of_this_django_version() -> None:
    digest = hashlib.sha256(inspect.getsource(ASGIHandler.handle).encode()).hexdigest()
    assert digest == HANDLE_FINGERPRINT, (
        "Django's ASGIHandler.handle changed: compare it with ApiASGIHandler._handle_lean, "
        "carry the change over, then update HANDLE_FINGERPRINT"
    )


@pytest.mark.parametrize(
    ("method", "parameters"),
    [
        ("read_body", ["self", "receive"]),
        ("create_request", ["self", "scope", "body_file"]),
        ("send_response", ["self", "response", "send"]),
        ("listen_for_disconnect", ["self", "receive"]),
        ("run_get_response", ["self", "request"]),
        ("_get_response_async", ["self", "request"]),
        ("_get_response", ["self", "request"]),
    ],
)
def test_it_finds_the_handler_methods_it_calls(method: str, parameters: list[str]) -> None:
    assert list(inspect.signature(getattr(ASGIHandler, method)).parameters) == parameters


def test_it_replaces_the_members_load_middleware_sets() -> None:
    stock = ASGIHandler()  # loads the project's middleware the stock way
    for name in ("_view_middleware", "_template_response_middleware", "_exception_middleware", "_middleware_chain"):
        assert hasattr(stock, name), name
    lean = ApiASGIHandler()
    assert (lean._view_middleware, lean._template_response_middleware, lean._exception_middleware) == ([], [], [])
    assert "load_middleware" in vars(BaseHandler)
    assert HttpResponse()._resource_closers == []  # type: ignore[attr-defined]  # the private member lean_asgi uses


@pytest.mark.django_db(transaction=True)
def test_it_answers_and_audits_a_v1_request() -> None:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=ApiASGIHandler())  # type: ignore[arg-type]  # Django types the scope dict, httpx MutableMapping
        # A host in ALLOWED_HOSTS: /v1 checks it too.
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.get("/v1/models", headers={"authorization": "Bearer syn_wrong"})

    response = asyncio.run(call())
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert AuditEvent.objects.get(request_id=response.headers["x-request-id"]).decision == "blocked_auth"
