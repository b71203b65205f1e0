from __future__ import annotations

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class SynapseConfig(AppConfig):
    name = "synapse"

    def ready(self) -> None:
        from .db_roles import grant_after_migrate
        from .pool_check import use_recent_check

        post_migrate.connect(grant_after_migrate, dispatch_uid="synapse.grant_after_migrate")
        connection_created.connect(use_recent_check, dispatch_uid="synapse.use_recent_check")
