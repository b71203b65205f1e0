"""The console in a real browser (Debian's Chromium driven by Playwright) against a live server:
the approver's path (team → key → reveal once → reload shows nothing → revoke with a reason) and
the auditor's (filter, search, export; every other page refused). With SYNAPSE_SCREENSHOTS=1 the
main pages are saved to docs/console/.

Run by tests/test_console_browser.py in a pytest process of its own: Playwright's event loop and
the live server's threads then share nothing with the rest of the suite.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.test.testcases import LiveServerThread

from audit.access import APPROVER_GROUP, roles_ensure, user_groups_set
from audit.models import AuditEvent
from audit.services import AUDITOR_GROUP
from teams.models import ApiKey, Team
from teams.selectors import api_key_authenticate
from teams.services import IssuedKey

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "console"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make test installs it)"),
]


@dataclass(frozen=True)
class Server:
    url: str


@pytest.fixture(scope="module")
def console_server(django_db_setup: None, django_db_blocker: Any) -> Iterator[Server]:
    """Django's live-server thread (with the admin's static files), stopped when this module ends:
    pytest-django's session-wide one still holds a connection when the test database is dropped."""
    with django_db_blocker.unblock():
        thread = LiveServerThread("localhost", StaticFilesHandler, port=0)
        thread.daemon = True
        thread.start()
        thread.is_ready.wait()
        if thread.error:
            raise thread.error
        yield Server(url=f"http://localhost:{thread.port}")
        thread.terminate()


@pytest.fixture
def browser() -> Iterator[Any]:
    playwright_sync = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # plain synchronous calls between browser steps, so Django's async guard is lifted here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with playwright_sync.sync_playwright() as playwright:
        # Never `playwright install`: the distribution's Chromium, launched by path.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def member(group: str, username: str) -> None:
    roles_ensure()
    user = get_user_model().objects.create_user(username=username, password="a-long-pass-4321")
    user_groups_set(user=user, groups=Group.objects.filter(name=group))


def log_in(page: Any, console_server: Server, username: str) -> None:
    page.goto(f"{console_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "a-long-pass-4321")
    page.click("input[type=submit]")
    page.wait_for_selector("#synapse-dashboard")


def shot(page: Any, name: str) -> None:
    # Refreshing the committed screenshots is a choice (SYNAPSE_SCREENSHOTS=1), so a test run
    # leaves the working tree as it found it.
    if not os.environ.get("SYNAPSE_SCREENSHOTS"):
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_the_approvers_path(browser: Any, console_server: Server, routing: None) -> None:
    member(APPROVER_GROUP, "april")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, console_server, "april")
    shot(page, "dashboard")

    # A team, with a time zone typo first: a field error, not a crash.
    page.goto(f"{console_server.url}/admin/teams/team/add/")
    page.fill("#id_name", "claims")
    page.fill("#id_display_name", "Claims")
    page.fill("#id_owner_email", "owner@example.com")
    page.fill("#id_time_zone", "Berlin")
    page.click("input[name=_save]")
    page.wait_for_selector("text=did you mean Europe/Berlin")
    shot(page, "team-form-error")
    page.fill("#id_time_zone", "Europe/Berlin")
    page.click("input[name=_save]")

    # On to issuing a key for it.
    page.wait_for_selector("text=Approve and issue key")
    assert "/issue-key/" in page.url
    page.fill("#id_name", "Claims summariser")
    page.fill("#id_system_prompt", "Summarise claims.")
    page.select_option("#id_models", ["mock-small"])
    page.select_option("#id_classification", "sensitive")
    shot(page, "issue-key")
    page.click("text=Approve and issue key")

    page.wait_for_selector("#issued-key")
    plaintext = page.inner_text("#issued-key").strip()
    assert api_key_authenticate(plaintext) is not None
    assert plaintext in page.inner_text("#snippet-curl")
    shot(page, "key-issued")
    # Reloading shows nothing new and issues no second key.
    page.reload()
    page.wait_for_selector("#key-already-shown")
    assert plaintext not in page.content()
    assert ApiKey.objects.filter(team__name="claims").count() == 1

    # Revoke from the key's page, with a reason.
    api_key = ApiKey.objects.get(team__name="claims")
    page.goto(f"{console_server.url}/admin/teams/apikey/{api_key.pk}/change/")
    page.click("#revoke-key")
    page.fill("#id_reason", "use case retired")
    shot(page, "revoke-key")
    page.click("text=Yes, revoke this key")
    page.wait_for_selector("text=revoked; it is refused from its next request")
    assert api_key_authenticate(plaintext) is None
    row = AuditEvent.objects.get(event_type="key_revoked")
    assert row.actor == "april" and row.detail == {"reason": "use case retired"}
    team = Team.objects.get(name="claims", time_zone="Europe/Berlin")
    # The spend page marks the revoked key; the audit trail is not the approver's.
    page.goto(f"{console_server.url}/admin/teams/team/{team.pk}/spend/")
    page.wait_for_selector("#spend-by-model")
    assert "(revoked)" in page.inner_text("#content")
    shot(page, "spend")
    assert page.goto(f"{console_server.url}/admin/audit/auditevent/").status == 403


@pytest.fixture
def traffic(sensitive_key: IssuedKey) -> IssuedKey:
    """Two requests through the gateway, made before the browser's event loop starts."""
    from audit.tests.helpers import chat

    chat(sensitive_key.plaintext, model="gpt-4o-mini")  # refused: not on the key's allowlist
    chat(sensitive_key.plaintext, content="mail me at jane@example.com")
    return sensitive_key


def test_the_auditors_path(traffic: IssuedKey, browser: Any, console_server: Server) -> None:
    sensitive_key = traffic
    refused = AuditEvent.objects.get(event_type="request", decision="blocked_scope")
    member(AUDITOR_GROUP, "audrey")
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    log_in(page, console_server, "audrey")

    page.goto(f"{console_server.url}/admin/audit/auditevent/")
    shot(page, "audit-list")
    # Filter by decision, then search by the start of a request id.
    page.click("a[href='?decision=blocked_scope']")
    page.wait_for_selector(f"text={refused.request_id}")
    page.fill("#searchbar", refused.request_id[:12])
    page.press("#searchbar", "Enter")
    page.wait_for_url("**q=*")
    page.wait_for_selector(f"text={refused.request_id}")
    # Export what is shown.
    with page.expect_download() as download:
        page.click("#export-csv")
    exported = Path(download.value.path()).read_text()
    assert refused.request_id in exported and exported.count("\n") == 2  # header + the one row
    assert AuditEvent.objects.filter(event_type="audit_exported", actor="audrey").count() == 1

    governance = AuditEvent.objects.filter(event_type="key_issued").latest("seq")
    page.goto(f"{console_server.url}/admin/audit/auditevent/{governance.pk}/change/")
    shot(page, "audit-governance-row")

    # Every other page is refused with the console's own page.
    team = sensitive_key.api_key.team
    for path in (
        "/admin/teams/team/",
        f"/admin/teams/team/{team.pk}/spend/",
        f"/admin/teams/apikey/{sensitive_key.api_key.pk}/spend/",
        "/admin/alerts/alert/",
        "/admin/auth/user/",
    ):
        response = page.goto(f"{console_server.url}{path}")
        assert response.status == 403, path
        assert "Not allowed" in page.content(), path
    shot(page, "refused")
