from __future__ import annotations

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from django.contrib.auth import signals as auth_signals
        from django.db.models.signals import post_migrate

        from . import receivers

        auth_signals.user_logged_in.connect(receivers.on_login, dispatch_uid="audit.admin_login")
        auth_signals.user_logged_out.connect(receivers.on_logout, dispatch_uid="audit.admin_logout")
        auth_signals.user_login_failed.connect(receivers.on_login_failed, dispatch_uid="audit.admin_login_failed")
        # After the last app's migrate (auth's own post_migrate receiver makes each app's
        # permissions): the roles span several apps, and setting them is idempotent.
        post_migrate.connect(receivers.on_post_migrate, dispatch_uid="audit.roles")
