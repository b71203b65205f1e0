"""The `stream_opened` event type: a streamed answer's row committed before its first byte (choices
only: no table change, so the append-only triggers stay in place on SQLite too)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0008_group_deleted_event"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="event_type",
            field=models.CharField(
                choices=[
                    ("request", "API request"),
                    ("stream_opened", "Stream opened"),
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
                    ("mcp_server_registered", "MCP server registered"),
                    ("mcp_server_updated", "MCP server updated"),
                    ("tool_call", "Tool call (MCP)"),
                    ("team_deleted", "Team deleted"),
                    ("user_created", "Console user created"),
                    ("user_changed", "Console user changed"),
                    ("user_deleted", "Console user deleted"),
                    ("group_changed", "Console role (group) changed"),
                    ("group_deleted", "Console role (group) deleted"),
                    ("audit_exported", "Audit trail exported"),
                ],
                db_index=True,
                max_length=32,
            ),
        ),
    ]
