"""Backend kinds for OpenAI's Responses API (openai_responses, azure_openai_responses)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0003_mcp_servers"),
    ]

    operations = [
        migrations.AlterField(
            model_name="backend",
            name="kind",
            field=models.CharField(
                choices=[
                    ("mock", "Built-in mock"),
                    ("openai", "OpenAI"),
                    ("azure_openai", "Azure OpenAI"),
                    ("vllm", "vLLM"),
                    ("ollama", "Ollama"),
                    ("anthropic", "Anthropic"),
                    ("gemini", "Google Gemini"),
                    ("openai_responses", "OpenAI (Responses API)"),
                    ("azure_openai_responses", "Azure OpenAI (Responses API)"),
                ],
                max_length=32,
            ),
        ),
    ]
