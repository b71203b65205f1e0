"""The layer rule of docs/ARCHITECTURE.md, enforced: every app module's imports (module level,
inside functions, under TYPE_CHECKING alike) may only reach the apps its layer allows.

    synapse                  the /v1 pipeline, its views, the server's start-up: may import every app
    alerts  dlp              may import audit and teams
    teams                    may import audit and routing (a key's allowlist names routing's models)
    routing                  may import audit
    audit                    imports no app

Console modules (`admin.py`, `templatetags/`) show several layers on one page and may import
any app but synapse. Exempt: `migrations/` (frozen history) and `tests/` (a test sets up a
scenario across layers). Modules outside the apps (conftest, bench/, tests/) are not layered.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from conftest import ROOT

APPS = ("audit", "routing", "teams", "dlp", "alerts", "synapse")
MAY_IMPORT: dict[str, frozenset[str]] = {
    "audit": frozenset(),
    "routing": frozenset({"audit"}),
    "teams": frozenset({"audit", "routing"}),
    "dlp": frozenset({"audit", "routing", "teams"}),
    "alerts": frozenset({"audit", "teams"}),
    "synapse": frozenset(APPS),
}
CONSOLE_MAY_IMPORT = frozenset(APPS) - {"synapse"}
EXEMPT_DIRS = frozenset({"migrations", "tests"})


def _is_console(parts: tuple[str, ...]) -> bool:
    return parts[-1] == "admin.py" or "templatetags" in parts


def _imported_apps(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue  # relative imports stay inside their own app
        for name in names:
            if name.split(".")[0] in APPS:
                yield node.lineno, name


def layer_violations(root: Path = ROOT) -> tuple[int, list[str]]:
    """How many modules were checked, and one line per forbidden import."""
    checked, found = 0, []
    for app in APPS:
        for path in sorted((root / app).rglob("*.py")):
            parts = path.relative_to(root).parts
            if EXEMPT_DIRS & set(parts):
                continue
            checked += 1
            allowed = (MAY_IMPORT[app] | CONSOLE_MAY_IMPORT) if _is_console(parts) else MAY_IMPORT[app]
            for line, name in _imported_apps(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                target = name.split(".")[0]
                if target != app and target not in allowed:
                    may = ", ".join(sorted(allowed)) or "no app"
                    found.append(f"{Path(*parts)}:{line} imports {name} ({app} may import: {may})")
    return checked, found


def test_it_finds_no_upward_or_sideways_import() -> None:
    checked, violations = layer_violations()
    assert checked > 100  # the walk really read the apps
    assert violations == [], "imports that break the layer rule (docs/ARCHITECTURE.md):\n" + "\n".join(violations)


def test_it_reports_a_forbidden_import_by_module_and_line(tmp_path: Path) -> None:
    files = {
        "audit/models.py": "from __future__ import annotations\n\ndef f():\n    from synapse.pipeline import refuse\n",
        "audit/admin.py": "from teams.models import Team\n",  # the console may
        "audit/tests/test_x.py": "from synapse.context import RequestContext\n",  # tests are exempt
        "teams/limits.py": "import synapse.errors\nfrom .budgets import to_nano\n",
        "routing/models.py": "from teams.models import Team\n",  # sideways
    }
    for name, source in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    checked, violations = layer_violations(tmp_path)
    assert checked == 4
    assert violations == [
        "audit/models.py:4 imports synapse.pipeline (audit may import: no app)",
        "routing/models.py:1 imports teams.models (routing may import: audit)",
        "teams/limits.py:1 imports synapse.errors (teams may import: audit, routing)",
    ]
