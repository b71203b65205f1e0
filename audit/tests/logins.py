"""Logging in to the console as a person does: through the login form (django-axes watches it)."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse


def console_login(client: Client, *, username: str, password: str) -> bool:
    """True if the admin login form let this user in (a redirect to the console)."""
    response = client.post(
        reverse("admin:login"), {"username": username, "password": password, "next": reverse("admin:index")}
    )
    return response.status_code == 302 and response["location"] == reverse("admin:index")
