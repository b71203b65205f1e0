"""MCP server registrations and tool calls get their event types (choices only: no table change,
so the append-only triggers stay in place on SQLite too)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_decisions"),
    ]

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
                    ("mcp_server_registered", "MCP server registered"),
                    ("mcp_server_updated", "MCP server updated"),
                    ("tool_call", "Tool call (MCP)"),
                ],
                db_index=True,
                max_length=32,
            ),
        ),
    ]
