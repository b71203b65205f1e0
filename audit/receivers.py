"""Console sessions are governance events: Django's auth signals are the only hook for them."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.http import HttpRequest

from .access import roles_ensure
from .models import EventType
from .services import audit_governance_event


def _client(request: HttpRequest | None) -> dict[str, Any]:
    if request is None:
        return {"client_ip": None, "user_agent": ""}
    return {"client_ip": request.META.get("REMOTE_ADDR") or None, "user_agent": request.META.get("HTTP_USER_AGENT", "")}


# If the row cannot be written these raise, the login view answers 500 and the session is
# not saved: an unaudited console session is not granted (fail closed, as on /v1).


def on_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    audit_governance_event(event_type=EventType.ADMIN_LOGIN, actor=user, **_client(request))


def on_logout(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:  # logging out without a session
        audit_governance_event(event_type=EventType.ADMIN_LOGOUT, actor=user, **_client(request))


def on_login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    # Django has already masked the password in `credentials`; only the username is kept.
    audit_governance_event(
        event_type=EventType.ADMIN_LOGIN_FAILED, actor_name=str(credentials.get("username", "")), **_client(request)
    )


def on_post_migrate(sender: AppConfig, **kwargs: Any) -> None:
    # post_migrate comes once per app, in INSTALLED_APPS order, and auth makes each app's
    # permissions on its own signal: the roles, which span several apps, are set once, after
    # the last app's (each of the other runs cost as much; a test flush sends them all).
    if sender is _last_app_with_models():
        roles_ensure()


def _last_app_with_models() -> AppConfig:
    return [config for config in apps.get_app_configs() if config.models_module is not None][-1]
