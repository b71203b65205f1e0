from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SynapseConfig(AppConfig):
    name = "synapse"

    def ready(self) -> None:
        from .db_roles import grant_after_migrate

        post_migrate.connect(grant_after_migrate, dispatch_uid="synapse.grant_after_migrate")
