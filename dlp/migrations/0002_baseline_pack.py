"""Install the `baseline` pack, enabled, so a new gateway scans from its first request.

Baseline blocks credentials and private keys, redacts card, bank and national identifiers and
only records (alerts on) contact details and network addresses, so ordinary demo prompts pass.
Historical models only: the services (and their audit events) belong to later changes made by
people; this is the installation itself. Reversing removes what this migration installed.
"""

from __future__ import annotations

from django.db import migrations
from django.utils import timezone

PACK = "baseline"


def install(apps, schema_editor):  # type: ignore[no-untyped-def]
    from dlp.packfile import load_pack

    pattern_model = apps.get_model("dlp", "Pattern")
    version_model = apps.get_model("dlp", "PolicyVersion")
    alias = schema_editor.connection.alias
    pack = load_pack(PACK)
    existing = set(pattern_model.objects.using(alias).values_list("name", flat=True))
    pattern_model.objects.using(alias).bulk_create(
        [
            pattern_model(
                name=item.spec.name,
                category=item.spec.category,
                expression=item.spec.expression,
                validator=item.spec.validator,
                action=item.spec.action,
                severity=item.spec.severity,
                applies_to=item.spec.applies_to,
                enabled=True,
                pack=pack.name,
                pack_version=pack.version,
                basis=item.basis,
            )
            for item in pack.patterns
            if item.spec.name not in existing
        ]
    )
    row, created = version_model.objects.using(alias).get_or_create(pk=1, defaults={"version": 1, "changed_at": timezone.now()})
    if not created:
        row.version += 1
        row.changed_at = timezone.now()
        row.save()


def uninstall(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("dlp", "Pattern").objects.using(schema_editor.connection.alias).filter(pack=PACK).delete()


class Migration(migrations.Migration):
    dependencies = [("dlp", "0001_initial")]
    operations = [migrations.RunPython(install, uninstall)]
