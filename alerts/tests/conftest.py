"""Fixtures for the anomaly and webhook tests: a limited key, rule tuning, the counter clock."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from alerts import services
from alerts.models import AlertKind, AnomalyRule
from alerts.services import alerts_observe_request, anomaly_rule_update
from audit.models import Decision
from audit.services import audit_record_request
from synapse.audit_record import request_record
from synapse.context import RequestContext
from teams.limits import SpendLevel
from teams.models import Team
from teams.selectors import KeyScope, api_key_authenticate
from teams.services import api_key_issue


def tune(kind: str, **changes: Any) -> AnomalyRule:
    """Change one rule through the service the console uses (the row may be flushed away)."""
    rule = AnomalyRule.objects.filter(kind=kind).first()
    if rule is None:
        rule = AnomalyRule.default(kind)
        rule.save()
    return anomaly_rule_update(rule=rule, changes=changes)


@pytest.fixture
def only_rule() -> Callable[..., AnomalyRule]:
    """Disable every rule but `kind` (tuned with `changes`), so a test sees one rule's alerts."""

    def apply(kind: str, **changes: Any) -> AnomalyRule:
        for other in AlertKind.values:
            if other != kind:
                tune(other, enabled=False)
        return tune(kind, **{"enabled": True, **changes})

    return apply


def advance_counter_clock(seconds: float) -> None:
    """Make the counter store behave as if `seconds` had passed: every expiry comes that much closer.

    Cooldowns are expiring claims on the store, so this is how a test waits out a 30-minute
    cooldown without waiting.
    """
    with connection.cursor() as cursor:
        cursor.execute("UPDATE synapse_counter SET expires = expires - %s WHERE expires IS NOT NULL", [seconds])
    services._cooldowns.clear()  # this process's memo of the store's cooldowns, now stale


def issue_scope(team: Team, **binding: Any) -> KeyScope:
    issued = api_key_issue(
        team=team,
        name=binding.pop("name", f"key {uuid.uuid4().hex[:6]}"),
        system_prompt="Be brief.",
        models=["mock-small", "gpt-4o-mini"],
        classification="non_sensitive",
        **binding,
    )
    scope = api_key_authenticate(issued.plaintext)
    assert scope is not None
    return scope


def finish_request(
    scope: KeyScope | None,
    *,
    at: datetime,
    decision: str = "allowed",
    tokens: int | None = None,
    client_ip: str = "198.51.100.20",
    spend: list[SpendLevel] | None = None,
    cost: Decimal | None = None,
) -> list[Any]:
    """What the pipeline's audit hop does for one finished request: the audit row, then the rules."""
    ctx = RequestContext(
        request_id=f"req_{uuid.uuid4().hex}",
        endpoint="chat.completions",
        method="POST",
        path="/v1/chat/completions",
        client_ip=client_ip,
        user_agent="test",
        received_at=at,
        key=scope,
    )
    ctx.decision = Decision(decision)
    ctx.status = 200 if ctx.decision == Decision.ALLOWED or ctx.decision.is_monitored else 400
    ctx.prompt_tokens, ctx.completion_tokens, ctx.cost = tokens, 0 if tokens is not None else None, cost
    audit_record_request(record=request_record(ctx))
    return alerts_observe_request(
        key=scope, decision=ctx.decision, client_ip=client_ip, at=at, tokens=tokens or 0, spend=spend or []
    )
