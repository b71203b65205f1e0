"""Name every decision the pipeline records, monitor mode's included (choices only: no change
to the table, so SQLite keeps the append-only triggers of 0002)."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_event_types")]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="decision",
            field=models.CharField(
                blank=True,
                choices=[
                    ("allowed", "allowed"),
                    ("blocked_auth", "blocked: key"),
                    ("blocked_scope", "blocked: scope"),
                    ("blocked_dlp", "blocked: DLP"),
                    ("blocked_limit", "blocked: limit"),
                    ("blocked_budget", "blocked: budget"),
                    ("invalid_request", "invalid request"),
                    ("upstream_error", "upstream error"),
                    ("upstream_timeout", "upstream timeout"),
                    ("client_disconnected", "client disconnected"),
                    ("audit_failure", "audit failure"),
                    ("internal_error", "internal error"),
                    ("monitor_blocked_dlp", "monitor: would block (DLP)"),
                    ("monitor_blocked_limit", "monitor: would block (limit)"),
                    ("monitor_blocked_budget", "monitor: would block (budget)"),
                    ("monitor_internal_error", "monitor: limit store unavailable"),
                ],
                db_index=True,
                max_length=32,
            ),
        ),
    ]
