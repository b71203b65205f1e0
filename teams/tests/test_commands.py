"""Operator commands: issue_key, revoke_key, import_routing, seed_demo."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from routing.models import Backend, Model
from teams.models import ApiKey, Team
from teams.selectors import api_key_authenticate

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_issue_key_prints_the_key_alone_on_the_last_line(routing: None) -> None:
    output = run(
        "issue_key", "--team", "radiology", "--create-team", "--name", "Report drafts", "--models", "llama-3-8b,mock-small",
        "--classification", "sensitive", "--system-prompt", "Draft radiology reports.", "--rpm", "30", "--max-tokens", "500",
        "--expires", "2099-12-31",
    )  # fmt: skip
    key = output.strip().splitlines()[-1]
    scope = api_key_authenticate(key)
    assert scope is not None and scope.team_name == "radiology" and scope.rpm == 30 and scope.max_tokens == 500
    expires_at = ApiKey.objects.get(pk=scope.key_id).expires_at
    assert expires_at is not None and expires_at.year == 2099
    assert key not in json.dumps(list(ApiKey.objects.values()), default=str)


def test_issue_key_json_and_prompt_file(routing: None, team: Team, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("From a file.")
    payload = json.loads(
        run(
            "issue_key",
            "--team",
            team.name,
            "--name",
            "n",
            "--models",
            "mock-small",
            "--classification",
            "non_sensitive",
            "--system-prompt-file",
            str(prompt),
            "--max-concurrent",
            "5",
            "--json",
        )
    )
    assert set(payload) == {"key", "id", "team", "models", "tools"} and payload["models"] == ["mock-small"]
    assert payload["tools"] == []  # no --tools: no tool policy
    scope = api_key_authenticate(payload["key"])
    assert scope is not None and scope.system_prompt == "From a file." and scope.max_concurrent == 5


def test_issue_key_refuses_a_sensitive_cloud_binding(routing: None, team: Team) -> None:
    with pytest.raises(CommandError, match="on-premises"):
        run(
            "issue_key",
            "--team",
            team.name,
            "--name",
            "n",
            "--models",
            "gpt-4o-mini",
            "--classification",
            "sensitive",
            "--system-prompt",
            "p",
        )


def test_issue_key_needs_an_existing_team_unless_asked_to_create_it(routing: None) -> None:
    with pytest.raises(CommandError, match="--create-team"):
        run(
            "issue_key",
            "--team",
            "ghost",
            "--name",
            "n",
            "--models",
            "mock-small",
            "--classification",
            "sensitive",
            "--system-prompt",
            "p",
        )


def test_revoke_key(sensitive_key) -> None:
    assert "revoked key" in run("revoke_key", str(sensitive_key.api_key.pk), "--reason", "withdrawn")
    assert api_key_authenticate(sensitive_key.plaintext) is None
    with pytest.raises(CommandError):
        run("revoke_key", "999999")


def test_import_routing_is_idempotent_and_audited(db, tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(
        """
backends:
  - {name: local-vllm, kind: vllm, base_url: http://127.0.0.1:8000/v1, location: on_prem}
  - {name: openai, kind: openai, base_url: https://api.openai.com/v1, api_key_env: OPENAI_API_KEY, location: cloud}
models:
  - {name: llama-3-8b, backend: local-vllm, upstream_model: meta-llama/Meta-Llama-3-8B-Instruct, input_price_per_mtok: 0, output_price_per_mtok: 0}
  - {name: gpt-4o, backend: openai, input_price_per_mtok: 2.5, output_price_per_mtok: 10}
"""
    )
    assert "4 created, 0 updated, 0 unchanged" in run("import_routing", str(path))
    assert "0 created, 0 updated, 4 unchanged" in run("import_routing", str(path))
    assert Backend.objects.get(name="openai").api_key_env == "OPENAI_API_KEY"
    assert str(Model.objects.get(name="gpt-4o").output_price_per_mtok) == "10.000000"
    assert AuditEvent.objects.filter(event_type="routing_imported").count() == 1
    path.write_text("backends:\n  - {name: x, kind: nonsense, location: cloud}\n")
    with pytest.raises(CommandError, match="kind must be one of"):
        run("import_routing", str(path))


def test_seed_demo_is_idempotent(db) -> None:
    first = run("seed_demo")
    key = next(line.strip() for line in first.splitlines() if line.strip().startswith("syn_"))
    assert api_key_authenticate(key) is not None
    second = run("seed_demo")
    assert "already issued" in second and "syn_" not in second.replace("syn_...", "")
    assert ApiKey.objects.count() == 1 and Team.objects.count() == 1
