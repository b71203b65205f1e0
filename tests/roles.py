"""The test database under two roles, as production runs it (issue 14, synapse/db_roles.py).

With DATABASE_ADMIN_URL set (`make test` sets it), the owner role creates, migrates, empties and
drops the test database, and everything else — the tests' own queries and every server they
start — runs as DATABASE_URL's role, which owns nothing, is no superuser, and so cannot TRUNCATE,
disable a trigger or rewrite the audit log. Without it one role does all of it (a developer's
superuser URL), as before.

A test that needs the owner's powers says so: `@owner_db` (it commits its rows, so the owner's
session sees them) and `connections[OWNER_ALIAS]`.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from synapse.db_roles import ADMIN_ALIAS, serving_role_grant

TWO_ROLES = ADMIN_ALIAS in settings.DATABASES
OWNER_ALIAS = ADMIN_ALIAS if TWO_ROLES else DEFAULT_DB_ALIAS
owner_db = pytest.mark.django_db(transaction=True, databases=sorted({DEFAULT_DB_ALIAS, OWNER_ALIAS}))

_LOGIN = ("USER", "PASSWORD", "HOST", "PORT")


def url_of(settings_dict: dict[str, Any]) -> str:
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


class DefaultLogin:
    """Which role the default alias logs in as. Django creates, migrates and drops the test
    database through the default alias, so it is the owner's for those steps and the serving
    role's in between. Its settings dict is settings.DATABASES["default"] itself, NAME and all
    (Django rewrites NAME to the test database's), so only the login changes hands."""

    def __init__(self) -> None:
        self.serving = {key: settings.DATABASES[DEFAULT_DB_ALIAS].get(key) for key in _LOGIN}
        self.owner = {key: settings.DATABASES[OWNER_ALIAS].get(key) for key in _LOGIN}

    def _switch(self, login: dict[str, Any]) -> None:
        connection = connections[DEFAULT_DB_ALIAS]
        connection.close()
        if connection.vendor == "postgresql":
            connection.close_pool()  # type: ignore[attr-defined]  # PostgreSQL's wrapper: its sessions are the role being left
        connection.settings_dict.update(login)

    def as_owner(self) -> None:
        if TWO_ROLES:
            self._switch(self.owner)

    def as_serving_role(self) -> None:
        if TWO_ROLES:
            self._switch(self.serving)

    def grant(self) -> None:
        """What `migrate_locked` grants the serving role, on the test database: run as the owner."""
        if TWO_ROLES:
            serving_role_grant(role=self.serving["USER"] or "", using=DEFAULT_DB_ALIAS)
