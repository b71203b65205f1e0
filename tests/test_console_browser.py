"""Runs the console's browser tests (tests/console_browser_cases.py) in a pytest process of their
own, one per path: Playwright's event loop and the live server's request threads (and their
pooled database sessions) then cannot leak into the tests that follow in this process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = "tests/console_browser_cases.py"
CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make test installs it)")
@pytest.mark.parametrize("case", ["test_the_approvers_path", "test_the_auditors_path"])
def test_the_console_in_a_browser(case: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{CASES}::{case}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = child.communicate(timeout=600)
    finally:
        child.kill()
        _drop_leftover_database(child.pid)
    text = output.decode(errors="replace")
    assert child.returncode == 0, text[-6000:]
    assert " passed" in text and " skipped" not in text, text[-2000:]


def _drop_leftover_database(pid: int) -> None:
    """The child's test database (tests/settings.py names it by pid), if a live-server thread's
    session kept it from being dropped at the child's exit."""
    url = os.environ.get("DATABASE_ADMIN_URL") or os.environ.get("DATABASE_URL", "")  # the role that made it
    if not url.startswith("postgres"):
        return
    import psycopg

    base = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "test_synapse_{pid}" WITH (FORCE)')
