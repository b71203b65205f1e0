"""Upstream MCP servers the /mcp gateway aggregates."""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0002_reliability"),
    ]

    operations = [
        migrations.CreateModel(
            name="McpServer",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "name",
                    models.CharField(
                        max_length=64,
                        unique=True,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^[a-z0-9][a-z0-9-]{0,63}\\Z", "lowercase letters, digits and hyphens (no underscores)"
                            )
                        ],
                    ),
                ),
                (
                    "url",
                    models.URLField(
                        help_text="The server's Streamable HTTP endpoint, e.g. https://crm.internal/mcp.", max_length=500
                    ),
                ),
                ("location", models.CharField(choices=[("on_prem", "On-premises"), ("cloud", "Cloud")], max_length=16)),
                (
                    "api_key_env",
                    models.CharField(
                        blank=True, help_text="Env variable holding the bearer token the gateway sends upstream.", max_length=128
                    ),
                ),
                ("timeout_seconds", models.FloatField(blank=True, help_text="Whole call. Empty: 30 s.", null=True)),
                ("last_error", models.CharField(blank=True, max_length=500)),
                ("last_error_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "verbose_name": "MCP server",
                "ordering": ["name"],
            },
        ),
    ]
