"""Who made a console change: the signed-in staff member the services record as its actor."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest


def console_actor(request: HttpRequest) -> User:
    """The admin site lets only signed-in staff in, so this is never anonymous; refuse if it is."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied
    return user
