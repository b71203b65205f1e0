"""Site-wide 404/500 handlers: JSON in OpenAI's shape, so no caller ever sees an HTML error."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from .errors import error_body, internal_error
from .errors import not_found as not_found_error


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(not_found_error(request.path).body(), status=404)


def server_error(request: HttpRequest) -> JsonResponse:
    exc = internal_error()
    return JsonResponse(error_body(message=exc.message, type=exc.type, code=exc.code), status=500)
