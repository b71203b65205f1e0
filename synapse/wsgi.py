"""WSGI entry point (management and tooling only; the /v1 path is served over ASGI)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synapse.settings")

application = get_wsgi_application()
