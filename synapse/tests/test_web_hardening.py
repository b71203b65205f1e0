"""Web hardening (issue 14): console login throttling and `check --deploy` in production.

Before: 30 wrong admin passwords in a row, then the right one, logged in; `check --deploy`
warned about HSTS and cookies that were not Secure behind a TLS proxy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"


@pytest.fixture
def admin_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)


def login(client: Client, password: str, ip: str = "198.51.100.7") -> Any:
    return client.post(
        "/admin/login/?next=/admin/", {"username": "root", "password": password}, REMOTE_ADDR=ip
    )


@pytest.mark.django_db
def test_thirty_wrong_passwords_lock_the_username_out_of_that_address_until_cool_off(
    admin_user: Any, settings: Any
) -> None:
    client = Client()
    for _ in range(30):
        assert login(client, "wrong").status_code in (200, 429)  # the form again, then the lockout
    refused = login(client, PASSWORD)
    assert refused.status_code == 429 and "_auth_user_id" not in client.session
    # Per username + address: the administrator elsewhere is not locked out by a stranger.
    elsewhere = Client()
    assert login(elsewhere, PASSWORD, ip="203.0.113.9").status_code == 302
    # After the cool-off the right password works again.
    from axes.models import AccessAttempt

    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.first().attempt_time - timedelta(hours=1))
    assert login(client, PASSWORD).status_code == 302 and client.session["_auth_user_id"] == str(admin_user.pk)


PRODUCTION = {
    "SYNAPSE_SECRET_KEY": "x" * 20 + "production-like-secret-key-with-enough-entropy-0123456789",
    "SYNAPSE_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto=https",
    "ALLOWED_HOSTS": "synapse.example.com",
    "SYNAPSE_DEBUG": "0",
}


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SYNAPSE_", "DJANGO_SETTINGS"))}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env={**base, "DJANGO_SETTINGS_MODULE": "synapse.settings", **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_deploy_is_clean_in_the_production_configuration() -> None:
    result = check_deploy(PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_fails_without_the_tls_settings() -> None:
    # The test above can fail: without the proxy header there is no HSTS and cookies are not Secure.
    result = check_deploy({k: v for k, v in PRODUCTION.items() if k != "SYNAPSE_SECURE_PROXY_SSL_HEADER"})
    assert result.returncode != 0 and "security.W004" in result.stderr + result.stdout
