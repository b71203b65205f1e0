"""Name every governance event the services record (choices only: no change to the table).

Django leaves choices out of the schema, so on SQLite this does not rebuild the table and the
append-only triggers of 0002 stay in place.
"""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_chain")]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="event_type",
            field=models.CharField(
                choices=[
                    ("request", "API request"),
                    ("team_created", "Team created"),
                    ("team_changed", "Team changed"),
                    ("key_issued", "Key issued"),
                    ("key_revoked", "Key revoked"),
                    ("key_expiry_changed", "Key expiry changed"),
                    ("routing_imported", "Routing imported"),
                    ("routing_changed", "Routing changed"),
                    ("policy_changed", "DLP policy changed"),
                    ("limits_changed", "Limits or budget changed"),
                    ("admin_login", "Admin login"),
                    ("admin_logout", "Admin logout"),
                    ("admin_login_failed", "Admin login failed"),
                    ("anomaly_rule_changed", "Anomaly rule changed"),
                    ("alert_acknowledged", "Alert acknowledged"),
                    ("webhook_created", "Webhook created"),
                    ("webhook_changed", "Webhook changed"),
                ],
                db_index=True,
                max_length=32,
            ),
        ),
    ]
