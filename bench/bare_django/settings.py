"""The peer benchmark's floor: a bare Django project with one async view (no apps, no database)."""

from __future__ import annotations

SECRET_KEY = "bench-bare-django-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.bare_django.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, object] = {}
USE_TZ = True
