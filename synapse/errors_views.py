"""Site-wide 404/500 handlers: JSON in OpenAI's shape for API callers, an HTML page in the console.

The console (/admin/) is used in a browser by approvers and auditors: a JSON body there reads as
a crash. Every other path keeps the API's JSON so no API caller ever sees an HTML error.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader

from .errors import error_body, internal_error
from .errors import not_found as not_found_error

CONSOLE_PREFIX = "/admin/"


def _is_console(request: HttpRequest) -> bool:
    return request.path.startswith(CONSOLE_PREFIX) or request.path == CONSOLE_PREFIX.rstrip("/")


def _console_page(request: HttpRequest, *, status: int, title: str, message: str) -> HttpResponse:
    # A plain template with no context processors: it must render even when the failure was in
    # the database or the session, so it depends on nothing but the request id.
    html = loader.get_template("console/error.html").render(
        {
            "status": status,
            "title": title,
            "message": message,
            "request_id": getattr(request, "synapse_request_id", ""),
            "home": CONSOLE_PREFIX,
        }
    )
    return HttpResponse(html, status=status, content_type="text/html; charset=utf-8")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_console(request):
        return _console_page(request, status=404, title="Page not found", message="There is no console page at this address.")
    return JsonResponse(not_found_error(request.path).body(), status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_console(request):
        return _console_page(
            request,
            status=500,
            title="Something went wrong",
            message="The console could not complete this request. Nothing was saved by it. "
            "If it happens again, send the request id below to your Synapse operator.",
        )
    exc = internal_error()
    return JsonResponse(error_body(message=exc.message, type=exc.type, code=exc.code), status=500)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_console(request):
        return _console_page(
            request,
            status=403,
            title="Not allowed",
            message="Your role does not give access to this page. Ask an administrator if you need it.",
        )
    return JsonResponse(
        error_body(message="You may not access this resource.", type="permission_error", code="forbidden"), status=403
    )
