"""Tool calls get their anomaly rule: repeated refusals of one key's tool calls."""

from __future__ import annotations

from django.db import migrations, models


def seed(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("alerts", "AnomalyRule").objects.get_or_create(
        kind="tool_refusals",
        defaults={
            "threshold": 5,
            "window_minutes": 10,
            "factor": 1.0,
            "baseline_minutes": 0,
            "cooldown_minutes": 30,
            "severity": "warning",
        },
    )


class Migration(migrations.Migration):
    dependencies = [("alerts", "0002_default_rules")]
    operations = [
        migrations.AlterField(
            model_name="alert",
            name="kind",
            field=models.CharField(
                choices=[
                    ("usage_spike", "Usage spike"),
                    ("dlp_blocks", "Repeated DLP blocks"),
                    ("off_hours", "Off-hours burst"),
                    ("budget_threshold", "Budget threshold"),
                    ("auth_failures", "Repeated authentication failures"),
                    ("limit_breach", "Rate limit or budget breach"),
                    ("tool_refusals", "Repeated tool-call refusals"),
                ],
                db_index=True,
                max_length=32,
            ),
        ),
        migrations.AlterField(
            model_name="anomalyrule",
            name="kind",
            field=models.CharField(
                choices=[
                    ("usage_spike", "Usage spike"),
                    ("dlp_blocks", "Repeated DLP blocks"),
                    ("off_hours", "Off-hours burst"),
                    ("budget_threshold", "Budget threshold"),
                    ("auth_failures", "Repeated authentication failures"),
                    ("limit_breach", "Rate limit or budget breach"),
                    ("tool_refusals", "Repeated tool-call refusals"),
                ],
                max_length=32,
                unique=True,
            ),
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
