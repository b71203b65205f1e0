"""OpenAI-shaped errors: one exception type the pipeline raises, one body shape clients parse.

The official SDKs choose the exception class from the HTTP status alone, so the status is
what matters most; `type` and `code` follow OpenAI's vocabulary so logs read the same.
"""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from audit.models import Decision
from dlp.budget import ScanBudgetError
from teams.limits import Breach, BreachKind

_PER_MINUTE = {
    BreachKind.RPM: "requests",
    BreachKind.TEAM_RPM: "requests",
    BreachKind.TPM: "tokens",
    BreachKind.TEAM_TPM: "tokens",
    BreachKind.CONCURRENCY: "requests",  # not per minute, but a 429 the SDKs retry the same way
}


class GatewayError(Exception):
    """A request the gateway refuses or cannot complete, with the response the client gets."""

    def __init__(
        self,
        *,
        status: int,
        message: str,
        type: str,
        code: str | None,
        decision: Decision,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.decision = decision
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(message=self.message, type=self.type, code=self.code, param=self.param)


def error_body(*, message: str, type: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(exc: GatewayError, *, request_id: str | None = None) -> JsonResponse:
    response = JsonResponse(exc.body(), status=exc.status)
    for name, value in exc.headers.items():
        response[name] = value
    if request_id:
        response["x-request-id"] = request_id
    return response


def authentication_failed() -> GatewayError:
    # Unknown, revoked and expired keys share this one message so a caller learns nothing.
    return GatewayError(
        status=401,
        message="Invalid API key. Provide a valid Synapse key as 'Authorization: Bearer syn_...'.",
        type="authentication_error",
        code="invalid_api_key",
        decision=Decision.BLOCKED_AUTH,
    )


def model_not_allowed(model: str) -> GatewayError:
    return GatewayError(
        status=403,
        message=f"The model '{model}' is not allowed for this API key.",
        type="permission_error",
        code="model_not_allowed",
        param="model",
        decision=Decision.BLOCKED_SCOPE,
    )


def classification_violation(model: str) -> GatewayError:
    return GatewayError(
        status=403,
        message=(
            f"The model '{model}' is served by a cloud backend and this API key is bound to "
            "sensitive data, which may only reach on-premises backends."
        ),
        type="permission_error",
        code="classification_violation",
        param="model",
        decision=Decision.BLOCKED_SCOPE,
    )


def tool_not_allowed(name: str) -> GatewayError:
    return GatewayError(
        status=403,
        message=f"The tool '{name}' is not allowed for this API key.",
        type="permission_error",
        code="tool_not_allowed",
        param="tools",
        decision=Decision.BLOCKED_SCOPE,
    )


def undeclared_tool_call(name: str) -> GatewayError:
    # 422 like a withheld answer (dlp_response_blocked): retrying cannot help, and the request
    # itself was fine.
    return GatewayError(
        status=422,
        message=f"The model's answer was withheld: it called the tool '{name}', which the request did not declare.",
        type="invalid_request_error",
        code="undeclared_tool_call",
        decision=Decision.BLOCKED_SCOPE,
    )


def invalid_request(message: str, *, param: str | None = None, code: str | None = "invalid_value") -> GatewayError:
    return GatewayError(
        status=400,
        message=message,
        type="invalid_request_error",
        code=code,
        param=param,
        decision=Decision.INVALID_REQUEST,
    )


def payload_too_large(limit: int) -> GatewayError:
    return GatewayError(
        status=413,
        message=f"Request body exceeds the limit of {limit} bytes.",
        type="invalid_request_error",
        code="request_too_large",
        decision=Decision.INVALID_REQUEST,
    )


def body_timeout(seconds: float) -> GatewayError:
    return GatewayError(
        status=408,
        message=f"The request body did not arrive within {seconds:g} seconds.",
        type="invalid_request_error",
        code="request_timeout",
        decision=Decision.INVALID_REQUEST,
    )


def bad_host(host: str) -> GatewayError:
    return GatewayError(
        status=400,
        message=f"The Host header {host!r} is not one this gateway serves (ALLOWED_HOSTS).",
        type="invalid_request_error",
        code="invalid_host",
        decision=Decision.INVALID_REQUEST,
    )


def not_found(path: str) -> GatewayError:
    return GatewayError(
        status=404,
        message=f"Unknown request URL: {path}. See the README for the supported /v1 routes.",
        type="invalid_request_error",
        code="unknown_url",
        decision=Decision.INVALID_REQUEST,
    )


def method_not_allowed(method: str, path: str) -> GatewayError:
    return GatewayError(
        status=405,
        message=f"Method {method} is not allowed on {path}.",
        type="invalid_request_error",
        code="method_not_allowed",
        decision=Decision.INVALID_REQUEST,
    )


def upstream_failed(message: str, *, status: int = 502, code: str = "upstream_error") -> GatewayError:
    return GatewayError(
        status=status,
        message=message,
        type="api_error",
        code=code,
        decision=Decision.UPSTREAM_TIMEOUT if status == 504 else Decision.UPSTREAM_ERROR,
    )


def rate_limited(message: str, *, kind: BreachKind, retry_after: int, code: str = "rate_limit_exceeded") -> GatewayError:
    # OpenAI's 429 shape (type says which per-minute limit); the SDKs read Retry-After to
    # schedule their own retries.
    if kind not in _PER_MINUTE:
        raise ValueError(f"{kind} is not a per-minute limit")
    return GatewayError(
        status=429,
        message=message,
        type=_PER_MINUTE[kind],
        code=code,
        decision=Decision.BLOCKED_LIMIT,
        headers={"retry-after": str(max(1, retry_after))},
    )


def upstream_over_reservation(produced: int, cap: int) -> GatewayError:
    # The upstream was told to stop at `cap` (the tokens the limits held) and did not: a
    # provider fault, refused so that no budget or token limit is overrun through it.
    return GatewayError(
        status=502,
        message=f"The backend produced {produced} completion tokens, more than the {cap} it was told to stop at; "
        "the answer was withheld.",
        type="api_error",
        code="upstream_over_reservation",
        decision=Decision.UPSTREAM_ERROR,
    )


def budget_exceeded(message: str) -> GatewayError:
    # 402 rather than OpenAI's 429 insufficient_quota: retrying soon cannot help, and clients
    # that back off on 429 would otherwise hammer an exhausted budget.
    return GatewayError(
        status=402,
        message=message,
        type="insufficient_quota",
        code="budget_exceeded",
        decision=Decision.BLOCKED_BUDGET,
    )


def request_limit_exceeded(message: str, *, code: str, param: str | None = None) -> GatewayError:
    """A per-request cap bound to the key (messages, prompt tokens): the same request always fails."""
    return GatewayError(
        status=400,
        message=message,
        type="invalid_request_error",
        code=code,
        param=param,
        decision=Decision.BLOCKED_LIMIT,
    )


def limit_exceeded(breach: Breach) -> GatewayError:
    """What the client is told about a limit its request is over (teams.limits reports the facts)."""
    whose = "this API key's team" if breach.kind.is_team else "this API key"
    if breach.kind == BreachKind.MAX_MESSAGES:
        return request_limit_exceeded(
            f"This API key allows at most {breach.limit} messages per request.", code="too_many_messages", param="messages"
        )
    if breach.kind == BreachKind.MAX_PROMPT_TOKENS:
        return request_limit_exceeded(
            f"The prompt is about {breach.needed} tokens; this API key allows at most {breach.limit} per request.",
            code="prompt_too_long",
            param="messages",
        )
    if breach.kind in (BreachKind.BUDGET, BreachKind.TEAM_BUDGET):
        renews = breach.renews_at.isoformat() if breach.renews_at else "the start of the next period"
        return budget_exceeded(
            f"The budget of {whose} for the current period is exhausted; it renews at {renews}. Ask the team's owner to raise it."
        )
    if breach.kind in (BreachKind.TPM, BreachKind.TEAM_TPM):
        message = (
            f"Rate limit reached for {whose}: this request needs about {breach.needed} tokens and the "
            "tokens-per-minute limit has too few left."
        )
    elif breach.kind == BreachKind.CONCURRENCY:
        message = (
            f"Concurrency limit reached for {whose}: it allows at most {breach.limit} requests in flight at once. "
            "Retry when one of them has finished."
        )
        return rate_limited(message, kind=breach.kind, retry_after=breach.retry_after, code="concurrency_limit_exceeded")
    else:
        message = f"Rate limit reached for {whose}: too many requests per minute."
    return rate_limited(message, kind=breach.kind, retry_after=breach.retry_after)


def service_unavailable(what: str) -> GatewayError:
    # Fail closed (NIST SP 800-53 AU-5): a request that cannot be audited is not served.
    return GatewayError(
        status=503,
        message=f"The gateway cannot {what} right now, so the request was not served. Retry later.",
        type="api_error",
        code="service_unavailable",
        decision=Decision.AUDIT_FAILURE,
        headers={"retry-after": "1"},
    )


def limits_unavailable() -> GatewayError:
    # Fail closed, like the audit: a limit that cannot be counted is not a limit.
    return GatewayError(
        status=503,
        message="The gateway cannot reach its rate-limit store right now, so the request was not served. Retry later.",
        type="api_error",
        code="service_unavailable",
        decision=Decision.INTERNAL_ERROR,
        headers={"retry-after": "1"},
    )


def _named(categories: tuple[str, ...] | list[str]) -> str:
    return ", ".join(categories)


def dlp_blocked(categories: tuple[str, ...], *, param: str = "messages") -> GatewayError:
    # Names the categories, never the matched text: the error may end up in client logs.
    return GatewayError(
        status=400,
        message=f"The request was blocked by data-loss prevention: it contains {_named(categories)}.",
        type="invalid_request_error",
        code="dlp_blocked",
        param=param,
        decision=Decision.BLOCKED_DLP,
    )


def dlp_unscannable(exc: ScanBudgetError, *, param: str = "messages") -> GatewayError:
    # Fail closed: a prompt DLP could not finish scanning cannot be vouched for. Monitor mode
    # does not let it through either: redaction applies there too, and it was not done.
    if exc.reason == "size":
        message = (
            f"The request's text is {exc.measured} bytes; data-loss prevention scans at most {exc.limit} per "
            "request, so it was not sent. Split it into smaller requests."
        )
        code = "prompt_too_large_to_scan"
    else:
        message = (
            f"Data-loss prevention could not finish scanning the request's text within {exc.limit} ms, so it was not "
            "sent. Split it into smaller requests."
        )
        code = "prompt_scan_budget_exceeded"
    return GatewayError(
        status=400, message=message, type="invalid_request_error", code=code, param=param, decision=Decision.BLOCKED_DLP
    )


def dlp_unreadable_content(kinds: list[str], *, param: str = "messages") -> GatewayError:
    return GatewayError(
        status=400,
        message=(
            f"This API key is bound to sensitive data and the request contains content DLP cannot read "
            f"({_named(kinds)}). Send text only."
        ),
        type="invalid_request_error",
        code="dlp_unreadable_content",
        param=param,
        decision=Decision.BLOCKED_DLP,
    )


def dlp_response_blocked(categories: tuple[str, ...]) -> GatewayError:
    # 422, not 5xx: the SDKs retry 5xx, and a retry would only produce (and pay for) another
    # answer that is withheld; not 400 either, which says the request itself was wrong.
    return GatewayError(
        status=422,
        message=f"The model's answer was withheld by data-loss prevention: it contained {_named(categories)}.",
        type="invalid_request_error",
        code="dlp_response_blocked",
        decision=Decision.BLOCKED_DLP,
    )


def internal_error() -> GatewayError:
    return GatewayError(
        status=500,
        message="The gateway failed to process the request. It has been recorded; quote the x-request-id.",
        type="api_error",
        code="internal_error",
        decision=Decision.INTERNAL_ERROR,
    )


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> JsonResponse | None:
    """DRF hook so anything DRF itself raises (405, parse errors) still has OpenAI's shape."""
    from rest_framework import exceptions

    request = context.get("request")
    if isinstance(exc, GatewayError):
        return error_response(exc)
    if isinstance(exc, exceptions.MethodNotAllowed) and request is not None:
        return error_response(method_not_allowed(request.method, request.path))
    if isinstance(exc, exceptions.APIException):
        return error_response(
            GatewayError(
                status=exc.status_code,
                message=str(exc.detail),
                type="invalid_request_error",
                code=exc.default_code,
                decision=Decision.INVALID_REQUEST,
            )
        )
    return None
