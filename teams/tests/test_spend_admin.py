"""The console's spend pages (per team, per key) and the dashboard on the admin index.

Figures come from the audit log; charts are inline SVG. The machines are offline, so no page
may load anything from another host.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import Decision
from audit.services import audit_record_request
from synapse.audit_record import request_record
from synapse.context import RequestContext
from teams.models import ApiKey, Team
from teams.selectors import api_key_authenticate
from teams.services import IssuedKey, api_key_issue, team_update

pytestmark = pytest.mark.django_db

# An attribute or CSS reference that would make the browser fetch from another host.
EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import""", re.I)


@pytest.fixture
def console(approver) -> Client:
    client = Client()
    client.force_login(approver)
    return client


def issue(team: Team, name: str, budget: str | None = None) -> IssuedKey:
    return api_key_issue(
        team=team,
        name=name,
        system_prompt="Be brief.",
        models=["mock-small"],
        classification="sensitive",
        budget=Decimal(budget) if budget else None,
    )


def request_row(issued: IssuedKey, *, cost: str, decision: str = "allowed", days_ago: int = 0) -> None:
    scope = api_key_authenticate(issued.plaintext)
    ctx = RequestContext(
        request_id=f"req_{uuid.uuid4().hex}",
        endpoint="chat.completions",
        method="POST",
        path="/v1/chat/completions",
        client_ip="10.0.0.1",
        user_agent="test",
        received_at=timezone.now() - timedelta(days=days_ago),
        key=scope,
    )
    ctx.decision, ctx.cost = Decision(decision), Decimal(cost)
    audit_record_request(record=request_record(ctx))


@pytest.fixture
def spending(team: Team, routing: None) -> tuple[IssuedKey, IssuedKey]:
    team_update(team=team, changes={"budget": Decimal("2.00"), "budget_period": "day", "time_zone": "Europe/Berlin"})
    summariser, triage = issue(team, "Summariser", budget="1.00"), issue(team, "Triage")
    request_row(summariser, cost="0.30")
    request_row(summariser, cost="0.12")
    request_row(triage, cost="0.08")
    request_row(triage, cost="0", decision="blocked_dlp")
    request_row(triage, cost="5.00", days_ago=3)  # an earlier day: in the trend, not in today's period
    return summariser, triage


def charts(html: str) -> int:
    """Inline SVG charts (the admin's own icons are SVG too, without role="img")."""
    return html.count('<svg xmlns="http://www.w3.org/2000/svg" role="img"')


def assert_offline(html: str) -> None:
    assert not EXTERNAL.search(html), EXTERNAL.search(html)
    # A CDN host name anywhere (not just the letters: the page's CSRF token is random text).
    assert not re.search(r"\bcdn[\w-]*\.", html, re.I)


@pytest.mark.sqlite
def test_the_team_spend_page_shows_this_period_per_key(
    console: Client, team: Team, spending: tuple[IssuedKey, IssuedKey]
) -> None:
    response = console.get(reverse("admin:teams_team_spend", args=[team.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    # The team: 3 requests served today and 1 refused (not usage), $0.50 of $2.00; the summariser
    # $0.42 of its $1.00.
    table = html[html.find("<table") : html.find("</table>")]  # shown if an assertion fails
    claims = r"<strong>Claims</strong></td><td>3</td><td>1</td><td>0\.5000</td>\s*<td>2\.00</td><td>25\.0 %</td>"
    assert re.search(claims, html), table
    assert re.search(r">Summariser</a></td><td>2</td><td>0</td><td>0\.4200</td>\s*<td>1\.00</td><td>42\.0 %</td>", html), table
    assert re.search(r">Triage</a></td><td>1</td><td>1</td><td>0\.0800</td>\s*<td>—</td><td>—</td>", html), table
    # The period's bounds are shown in the team's zone (midnight in Berlin), not in UTC.
    assert re.search(r"Budget period: \d{4}-\d\d-\d\d 00:00 to \d{4}-\d\d-\d\d 00:00 \(Europe/Berlin", html), html
    assert "Europe/Berlin" in html and "day" in html
    # The 30-day trend: an SVG with one bar per day, today's and the earlier day's spend in the tooltips.
    assert charts(html) == 1 and html.count("<rect") == 30
    assert "$0.50</title>" in html and "$5.00</title>" in html
    # Totals with the title, and every value in a table too (screen readers, no hover needed).
    assert "(total $5.50, peak $5.00)" in html
    assert '<th scope="row">Total</th><td>$5.50</td>' in html and html.count('<tr><th scope="row">') == 31
    assert_offline(html)


def test_the_key_spend_page_shows_only_that_key(console: Client, spending: tuple[IssuedKey, IssuedKey]) -> None:
    summariser, _ = spending
    response = console.get(reverse("admin:teams_apikey_spend", args=[summariser.api_key.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    line = r"<strong>Summariser</strong></td><td>2</td><td>0</td><td>0\.4200</td>\s*<td>1\.00</td><td>42\.0 %</td>"
    assert re.search(line, html)
    assert "Triage" not in html and "$5.00" not in html
    assert charts(html) == 1 and "$0.42</title>" in html
    assert_offline(html)


@pytest.mark.sqlite
def test_the_admin_index_has_the_dashboard(console: Client, spending: tuple[IssuedKey, IssuedKey]) -> None:
    response = console.get(reverse("admin:index"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="synapse-dashboard"' in html and charts(html) == 4
    assert "Requests per day <span" in html and "peak 4)" in html  # today: 4 rows
    assert "Refused per day" in html and "peak 1)" in html  # the DLP block
    assert "Spend per day" in html and "peak $5.00)" in html and "$0.50</title>" in html
    assert_offline(html)


def test_a_key_without_requests_has_an_empty_spend_page(console: Client, team: Team, routing: None) -> None:
    idle = issue(team, "Idle")
    html = console.get(reverse("admin:teams_apikey_spend", args=[idle.api_key.pk])).content.decode()
    assert re.search(r"<strong>Idle</strong></td><td>0</td><td>0</td><td>0\.0000</td>", html) and "peak $0.00)" in html


def test_revoked_keys_are_marked_on_the_spend_page(console: Client, team: Team, spending: tuple[IssuedKey, IssuedKey]) -> None:
    from teams.services import api_key_revoke

    _, triage = spending
    api_key_revoke(api_key=triage.api_key, reason="retired")
    html = console.get(reverse("admin:teams_team_spend", args=[team.pk])).content.decode()
    assert re.search(r'>Triage</a> <span class="revoked">\(revoked\)</span>', html)
    assert not re.search(r">Summariser</a> <span", html)


def test_the_spend_pages_are_for_staff_only(team: Team, routing: None) -> None:
    idle = issue(team, "Idle")
    anonymous = Client()
    for url in (reverse("admin:teams_team_spend", args=[team.pk]), reverse("admin:teams_apikey_spend", args=[idle.api_key.pk])):
        response = anonymous.get(url)
        assert response.status_code == 302 and "/login/" in response["location"]
    assert ApiKey.objects.count() == 1


def test_spend_by_model_over_a_date_range_with_a_csv(console: Client, team: Team, spending: tuple[IssuedKey, IssuedKey]) -> None:
    import csv
    import io

    url = reverse("admin:teams_team_spend", args=[team.pk])
    html = console.get(url).content.decode()
    table = html[html.index('id="spend-by-model"') :].split("</table>")[0]
    # This period (today): the triage key's DLP refusal is a refusal, not usage.
    assert re.search(r"<td>Triage</td><td>[^<]*</td><td>1</td><td>1</td>", table), table
    assert "5.0800" not in table  # three days ago is outside today's period
    today = timezone.localdate(timezone=team.zone())
    wide = {"start": (today - timedelta(days=5)).isoformat(), "end": today.isoformat()}
    html = console.get(url, wide).content.decode()
    table = html[html.index('id="spend-by-model"') :].split("</table>")[0]
    assert re.search(r"<td>Triage</td><td>[^<]*</td><td>2</td><td>1</td><td>0</td><td>0</td><td>5\.0800</td>", table), table
    rows = list(csv.DictReader(io.StringIO(console.get(url, {**wide, "format": "csv"}).content.decode())))
    assert sum(Decimal(r["spent_usd"]) for r in rows) == Decimal("5.50")
    assert {r["key"] for r in rows} == {"Summariser", "Triage"}
    backwards = console.get(url, {"start": today.isoformat(), "end": (today - timedelta(days=1)).isoformat()})
    assert backwards.status_code == 200 and "ends before it starts" in backwards.content.decode()
