"""The anomaly rules with their default settings (each one is edited in the console)."""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

DEFAULTS = [
    # kind, threshold, window, factor, baseline, cooldown, severity
    ("usage_spike", 20, 5, 5.0, 60, 60, "warning"),
    ("dlp_blocks", 5, 10, 1.0, 0, 30, "warning"),
    ("off_hours", 20, 60, 1.0, 0, 120, "warning"),
    ("budget_threshold", 1, 0, 1.0, 0, 0, "warning"),
    ("auth_failures", 10, 5, 1.0, 0, 30, "critical"),
    ("limit_breach", 1, 0, 1.0, 0, 30, "info"),
]


def seed(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    rule = apps.get_model("alerts", "AnomalyRule")
    for kind, threshold, window, factor, baseline, cooldown, severity in DEFAULTS:
        rule.objects.get_or_create(
            kind=kind,
            defaults={
                "threshold": threshold,
                "window_minutes": window,
                "factor": factor,
                "baseline_minutes": baseline,
                "cooldown_minutes": cooldown,
                "severity": severity,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
