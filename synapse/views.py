"""The OpenAI-compatible /v1 endpoints: thin async views that build the context and hand over."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from adrf.views import APIView
from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone
from rest_framework.request import Request

from . import pipeline
from .context import RequestContext
from .errors import GatewayError, bad_host, method_not_allowed, not_found, payload_too_large
from .schemas import parse_json_object
from .wire import Wire
from .wire.chat import ChatWire
from .wire.doors import CHAT, MESSAGES, RESPONSES, wire_for_path
from .wire.messages import MessagesWire
from .wire.responses import ResponsesWire


def _context(request: HttpRequest, endpoint: str) -> RequestContext:
    meta = request.META
    return RequestContext(
        request_id=getattr(request, "synapse_request_id", "") or "",
        endpoint=endpoint,
        method=request.method or "",
        path=request.path,
        client_ip=client_ip(meta),
        user_agent=meta.get("HTTP_USER_AGENT", ""),
        received_at=timezone.now(),
    )


def allowed_hosts_only(
    get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]],
) -> Callable[[HttpRequest], Awaitable[HttpResponseBase]]:
    """ALLOWED_HOSTS for /v1 and /mcp: Django checks it in CommonMiddleware, which the lean
    handler leaves out. A foreign Host (DNS rebinding, a misrouted proxy) is refused, audited."""

    async def middleware(request: HttpRequest) -> HttpResponseBase:
        try:
            request.get_host()
        except DisallowedHost:
            host = str(request.META.get("HTTP_HOST") or request.META.get("SERVER_NAME") or "")
            return await pipeline.refuse(_context(request, "unknown"), bad_host(host[:200]), wire_for_path(request.path))
        return await get_response(request)

    markcoroutinefunction(middleware)
    return middleware


def request_client_ip(request: HttpRequest) -> str:
    """The caller's address for django-axes (console logins), as the audit rows see it."""
    return client_ip(request.META)


def client_ip(meta: dict[str, Any]) -> str:
    """The caller's address. Behind N trusted reverse proxies (SYNAPSE_TRUSTED_PROXIES) it is
    the N-th X-Forwarded-For entry from the right: entries further left are whatever the
    client chose to send, so they are never believed."""
    hops = settings.SYNAPSE["TRUSTED_PROXIES"]
    if hops > 0:
        forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return str(meta.get("REMOTE_ADDR", ""))


def _api_key(request: HttpRequest) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key", "").strip()


def _read_body(request: HttpRequest) -> dict[str, Any] | GatewayError:
    """The parsed JSON body, or the error to answer with. The lean handler bounds the read
    itself (size while reading, time) and leaves its refusal on the request."""
    refused: GatewayError | None = getattr(request, "synapse_body_error", None)
    if refused is not None:
        return refused
    limit = settings.SYNAPSE["MAX_BODY_BYTES"]
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return payload_too_large(limit)
    # read(), not .body: .body applies the console's DATA_UPLOAD_MAX_MEMORY_SIZE, and this
    # body's bound is MAX_BODY_BYTES (already enforced while it was read: lean_asgi.py).
    raw = request.read()
    if len(raw) > limit:
        return payload_too_large(limit)
    try:
        return parse_json_object(raw)
    except GatewayError as exc:
        return exc


class _V1View(APIView):
    # DRF's own auth, throttling and parsing are off: the pipeline does each of these itself.
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    throttle_classes: list[Any] = []
    endpoint = "unknown"
    wire: Wire = CHAT  # the door's error shape, for refusals made before the pipeline

    async def async_dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """adrf's dispatch runs DRF's sync `initial()` (negotiation, auth, throttles) in a thread
        on every request; none of it applies here, so skip the hop and call the handler."""
        self.args, self.kwargs = args, kwargs
        drf_request = self.initialize_request(request, *args, **kwargs)
        self.request = drf_request
        method = (request.method or "").lower()
        handler = getattr(self, method, None) if method in self.http_method_names else None
        if handler is None or method == "options":
            handler = self.http_method_not_allowed
        response: HttpResponseBase = await handler(drf_request, *args, **kwargs)
        return response

    async def http_method_not_allowed(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
        django_request = request._request
        ctx = _context(django_request, self.endpoint)
        refusal = method_not_allowed(django_request.method or "", django_request.path)
        return _tagged(await pipeline.refuse(ctx, refusal, self.wire), ctx)


class _CompletionsView(_V1View):
    """A chat-shaped door: the pipeline is the same, the wire translates at the edge."""

    async def post(self, request: Request) -> HttpResponseBase:
        django_request = request._request
        ctx = _context(django_request, self.endpoint)
        return _tagged(await pipeline.completions(ctx, _api_key(django_request), _read_body(django_request), self.wire), ctx)


def _tagged(response: HttpResponseBase, ctx: RequestContext) -> HttpResponseBase:
    # Anthropic's SDK reads its request id from `request-id`; OpenAI's from `x-request-id`.
    if ctx.endpoint.startswith("messages"):
        response["request-id"] = ctx.request_id
    return response


class ChatCompletionsView(_CompletionsView):
    endpoint = ChatWire.endpoint


class ResponsesView(_CompletionsView):
    endpoint, wire = ResponsesWire.endpoint, RESPONSES


class MessagesView(_CompletionsView):
    endpoint, wire = MessagesWire.endpoint, MESSAGES


class CountTokensView(_V1View):
    endpoint, wire = "messages.count_tokens", MESSAGES

    async def post(self, request: Request) -> HttpResponseBase:
        django_request = request._request
        ctx = _context(django_request, self.endpoint)
        return _tagged(await pipeline.count_tokens(ctx, _api_key(django_request), _read_body(django_request)), ctx)


class EmbeddingsView(_V1View):
    endpoint = "embeddings"

    async def post(self, request: Request) -> HttpResponseBase:
        django_request = request._request
        ctx = _context(django_request, "embeddings")
        return await pipeline.embeddings(ctx, _api_key(django_request), _read_body(django_request))


class ModelsView(_V1View):
    endpoint = "models"

    async def get(self, request: Request) -> HttpResponseBase:
        django_request = request._request
        return await pipeline.list_models(_context(django_request, "models"), _api_key(django_request))


async def v1_not_found(request: HttpRequest, rest: str = "") -> HttpResponseBase:
    return await pipeline.refuse(_context(request, "unknown"), not_found(request.path))
