"""`manage.py import_pack`: installs or upgrades a pack and prints the diff."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from dlp.models import Pattern
from dlp.packfile import load_pack

from .helpers import policy_events, policy_version

pytestmark = pytest.mark.django_db

ACME_V1 = """
pack: acme
version: 1
title: Acme
patterns:
  - {name: employee_id, category: EMPLOYEE_ID, expression: '\\bEMP-\\d{6}\\b', action: redact}
  - {name: project_code, category: PROJECT, expression: '\\bPRJ-[A-Z]{4}\\b', action: alert}
"""
ACME_V2 = """
pack: acme
version: 2
title: Acme
patterns:
  - {name: employee_id, category: EMPLOYEE_ID, expression: '\\bEMP-\\d{6}\\b', action: block}
  - {name: badge, category: BADGE, expression: '\\bBDG\\d{8}\\b', action: redact}
"""


def run(*args: str) -> str:
    out = StringIO()
    call_command("import_pack", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("name", ["gdpr", "hipaa", "pci-dss"])
def test_it_installs_a_shipped_pack_and_prints_the_diff(name: str) -> None:
    pack = load_pack(name)
    output = run(name)
    lines = output.splitlines()
    assert sorted(lines[:-1]) == sorted(f"+ {p.spec.name}" for p in pack.patterns)
    assert (
        lines[-1]
        == f"pack {name} (not installed → v{pack.version}) applied: {len(pack.patterns)} added, 0 changed, 0 disabled, 0 unchanged"
    )
    assert Pattern.objects.filter(pack=name, enabled=True).count() == len(pack.patterns)
    assert (
        run(name).strip()
        == f"pack {name} v{pack.version} is installed and unchanged ({len(pack.patterns)} patterns): nothing to do"
    )
    assert len(policy_events()) == 1


def test_a_dry_run_prints_the_diff_and_writes_nothing() -> None:
    version = policy_version()
    output = run("gdpr", "--dry-run")
    assert "+ gdpr.email" in output and "would apply (dry run)" in output
    assert not Pattern.objects.filter(pack="gdpr").exists() and policy_version() == version and policy_events() == []


def test_it_upgrades_a_pack_from_a_path(tmp_path: Path, approver) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(ACME_V1)
    run(str(path), "--actor", "alice")
    path.write_text(ACME_V2)
    output = run(str(path), "--actor", "alice")
    assert output.splitlines() == [
        "+ acme.badge",
        "~ acme.employee_id: action 'redact' → 'block'",
        "- acme.project_code (disabled: no longer in the pack)",
        "pack acme (v1 → v2) applied: 1 added, 1 changed, 1 disabled, 0 unchanged",
    ]
    assert [e["actor"] for e in policy_events()] == ["alice", "alice"]
    assert not Pattern.objects.get(name="acme.project_code").enabled


def test_it_prints_json_for_scripts(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(ACME_V1)
    document = json.loads(run(str(path), "--json"))
    assert document == {
        "pack": "acme",
        "version": 1,
        "installed_version": None,
        "applied": True,
        "added": ["acme.employee_id", "acme.project_code"],
        "changed": {},
        "disabled": [],
        "unchanged": [],
    }


def test_it_reports_bad_packs_and_unknown_actors(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no pack named 'sox'"):
        run("sox")
    path = tmp_path / "bad.yaml"
    path.write_text(ACME_V1.replace("\\bPRJ-[A-Z]{4}\\b", "PRJ-(?=[A-Z])"))
    with pytest.raises(CommandError, match="RE2 refuses the expression"):
        run(str(path))
    with pytest.raises(CommandError, match="no user 'mallory'"):
        run("gdpr", "--actor", "mallory")
    assert not Pattern.objects.filter(pack__in=["gdpr", "acme"]).exists()
