"""The admin index's dashboard: requests, refusals and spend per day, as SVG bar charts."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django import template
from django.utils import timezone

from audit.selectors import audit_top_dlp_categories, audit_top_keys
from teams.charts import bar_chart
from teams.spend import daily_activity

register = template.Library()


@register.inclusion_tag("admin/synapse/dashboard.html", takes_context=True)
def synapse_dashboard(context: dict[str, Any], days: int = 14) -> dict[str, Any]:
    user = context["request"].user
    activity = daily_activity(zone=timezone.get_current_timezone(), days=days)
    labels = [f"{row.day:%a %d %b}" for row in activity]
    since = timezone.now() - timedelta(days=days)
    can_read_audit = user.has_perm("audit.view_auditevent")
    return {
        "days": days,
        "totals": {
            "requests": sum(row.requests for row in activity),
            "refused": sum(row.blocked for row in activity),
            "monitored": sum(row.monitored for row in activity),
            "spend": sum((row.spend for row in activity), Decimal(0)),
        },
        "top_keys": audit_top_keys(since=since),
        "top_dlp": audit_top_dlp_categories(since=since),
        "can_issue": user.has_perm("teams.add_apikey"),
        "can_read_audit": can_read_audit,
        "charts": [
            bar_chart(list(zip(labels, [row.requests for row in activity], strict=True)), title="Requests per day"),
            bar_chart(
                list(zip(labels, [row.blocked for row in activity], strict=True)),
                title="Refused per day (auth, scope, DLP, limits, budget)",
                colour="#ba2121",
            ),
            bar_chart(
                list(zip(labels, [row.monitored for row in activity], strict=True)),
                title="Would have been refused (monitor mode)",
                colour="#c0892b",
            ),
            bar_chart(
                list(zip(labels, [row.spend for row in activity], strict=True)),
                title="Spend per day",
                unit="$",
                decimals=2,
                colour="#2b8a3e",
            ),
        ],
        # Only links the reader may follow: an auditor sees no alert link (alerts are the approver's).
        "open_alerts": _open_alerts() if user.has_perm("alerts.view_alert") else 0,
    }


def _open_alerts() -> int:
    from alerts.models import Alert

    return Alert.objects.filter(acknowledged_at__isnull=True).count()
