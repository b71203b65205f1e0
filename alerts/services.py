"""Writes for alerts and webhooks, and the per-request anomaly evaluation the pipeline calls.

`alerts_observe_request` runs in the pipeline's audit hop, right after the request's audit
row, so every rule that counts audit rows sees this request too. Each rule is cheap on the
common path: a request that is not a DLP block, not an auth failure, not off-hours and not
the first of its key in this minute costs one counter `add` (the spike check's throttle).

One incident is one alert: rules with a cooldown claim it with one atomic `add` on the
counter store (whichever worker gets there first fires; the rest stay silent until it
expires); budget thresholds are unique per period in the database itself.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import caches
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from audit.models import AuditEvent, Decision, EventType
from audit.services import audit_governance_event
from teams.periods import off_hours_started

from .models import DEFAULT_RULES, Alert, AlertKind, AnomalyRule, WebhookDelivery, WebhookEndpoint

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from teams.limits import SpendLevel
    from teams.selectors import KeyScope

logger = logging.getLogger("synapse.alerts")

COUNTERS = "counters"
DLP_BLOCKS = frozenset({Decision.BLOCKED_DLP, Decision.MONITOR_BLOCKED_DLP})
LIMIT_BREACHES = frozenset(
    {Decision.BLOCKED_LIMIT, Decision.BLOCKED_BUDGET, Decision.MONITOR_BLOCKED_LIMIT, Decision.MONITOR_BLOCKED_BUDGET}
)
BUDGET_THRESHOLDS = (50, 80, 100)
# What an agent's tool calls are refused for: an off-list or out-of-classification tool, a DLP
# block of its arguments or result, a rate limit (monitor-mode "would have" refusals count too).
TOOL_REFUSALS = frozenset({Decision.BLOCKED_SCOPE}) | DLP_BLOCKS | LIMIT_BREACHES
# The rows the per-key counting rules read: /v1 requests and /mcp tool calls alike.
COUNTED_EVENTS = (EventType.REQUEST, EventType.TOOL_CALL)


class _Seen:
    """A set that forgets its oldest entries beyond `limit`: a long-lived worker sees a new
    (budget, period, threshold) every period, and forgetting one only costs a doomed INSERT."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, entry: str) -> bool:
        return entry in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, entry: str) -> None:
        self._entries[entry] = None
        self._entries.move_to_end(entry)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


# Per process: budget thresholds this process already fired or saw fired (the database's
# unique constraint is the real guard; this only spares it a doomed INSERT per request).
_thresholds_seen = _Seen(limit=10_000)
# Per process: (key, minute) usage-spike checks already claimed here or seen claimed; spares the
# counter store a doomed `add` on every request after a key's first of the minute.
_spike_checks_seen = _Seen(limit=10_000)
_rules_cache: tuple[float, dict[str, AnomalyRule]] = (0.0, {})


class _Cooldowns:
    """Cooldowns this process claimed or found on the counter store, until they end: an
    off-hours stretch would otherwise read the team's cooldown on every request it makes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._ends: dict[str, float] = {}

    def holds(self, subject: str) -> bool:
        ends = self._ends.get(subject)
        if ends is None:
            return False
        if ends > time.time():
            return True
        del self._ends[subject]
        return False

    def hold(self, subject: str, *, until: float) -> None:
        if len(self._ends) >= self.limit:
            now = time.time()
            self._ends = {name: ends for name, ends in self._ends.items() if ends > now}
            if len(self._ends) >= self.limit:
                self._ends.clear()  # forgetting only costs a read of the counter store
        self._ends[subject] = until

    def clear(self) -> None:
        self._ends.clear()


_cooldowns = _Cooldowns(limit=10_000)


# ── alerts and their outbox ───────────────────────────────────────────────────────────


@transaction.atomic
def alert_fire(
    *,
    kind: str,
    title: str,
    subject: str,
    severity: str = "warning",
    team_id: int | None = None,
    key_id: int | None = None,
    detail: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
    at: datetime | None = None,
) -> Alert | None:
    """Record an alert and queue it for every subscribed webhook, in one transaction.

    The outbox rows commit with the alert or not at all, so a crash between the two cannot
    lose a delivery. Returns None when `dedupe_key` shows the alert was already raised.
    """
    at = at or timezone.now()
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                kind=kind,
                severity=severity,
                fired_at=at,
                title=title[:300],
                subject=subject[:200],
                team_id=team_id,
                key_id=key_id,
                detail=detail or {},
                dedupe_key=dedupe_key,
            )
    except IntegrityError:
        if dedupe_key is None:
            raise
        return None  # another worker raised this one first
    payload = {
        "type": "alert.fired",
        "alert": {
            "id": alert.pk,
            "kind": alert.kind,
            "severity": alert.severity,
            "title": alert.title,
            "subject": alert.subject,
            "team_id": alert.team_id,
            "key_id": alert.key_id,
            "fired_at": alert.fired_at.isoformat(),
            "detail": alert.detail,
        },
    }
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(endpoint=endpoint, alert=alert, payload=payload, next_attempt_at=at)
            for endpoint in WebhookEndpoint.objects.filter(is_active=True)
            if endpoint.wants(kind)
        ]
    )
    logger.warning("alert %s: %s", kind, alert.title)
    return alert


@transaction.atomic
def alert_acknowledge(*, alert: Alert, by: AbstractBaseUser, note: str = "") -> Alert:
    """Record who looked at an alert; the first person to acknowledge it stays on record."""
    now = timezone.now()
    # Conditional UPDATE: two people acknowledging at once make one acknowledgement, one audit event.
    won = Alert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True).update(
        acknowledged_at=now, acknowledged_by=by, acknowledge_note=note[:500]
    )
    alert.refresh_from_db(fields=["acknowledged_at", "acknowledged_by", "acknowledge_note"])
    if won:
        audit_governance_event(
            event_type=EventType.ALERT_ACKNOWLEDGED, actor=by, detail={"alert": alert.pk, "kind": alert.kind, "note": note[:500]}
        )
    return alert


def _clean_kinds(kinds: Iterable[str]) -> list[str]:
    cleaned = sorted({k for k in kinds if k})
    unknown = [k for k in cleaned if k not in AlertKind.values]
    if unknown:
        from django.core.exceptions import ValidationError

        raise ValidationError({"kinds": f"unknown alert kind(s): {', '.join(unknown)}"})
    return cleaned


@transaction.atomic
def webhook_endpoint_create(
    *, name: str, url: str, kinds: Iterable[str] = (), actor: AbstractBaseUser | None = None
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(name=name, url=url, kinds=_clean_kinds(kinds), secret=f"whsec_{secrets.token_urlsafe(32)}")
    endpoint.full_clean()
    endpoint.save()
    audit_governance_event(
        event_type=EventType.WEBHOOK_CREATED, actor=actor, detail={"endpoint": endpoint.pk, "url": url, "kinds": endpoint.kinds}
    )
    return endpoint


@transaction.atomic
def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    name: str,
    url: str,
    kinds: Iterable[str],
    is_active: bool,
    actor: AbstractBaseUser | None = None,
) -> WebhookEndpoint:
    endpoint.name, endpoint.url, endpoint.kinds, endpoint.is_active = name, url, _clean_kinds(kinds), is_active
    endpoint.full_clean()
    endpoint.save()
    audit_governance_event(
        event_type=EventType.WEBHOOK_CHANGED,
        actor=actor,
        detail={"endpoint": endpoint.pk, "url": url, "kinds": endpoint.kinds, "active": is_active},
    )
    return endpoint


@transaction.atomic
def anomaly_rule_update(*, rule: AnomalyRule, changes: dict[str, Any], actor: AbstractBaseUser | None = None) -> AnomalyRule:
    allowed = {"enabled", "threshold", "window_minutes", "factor", "baseline_minutes", "cooldown_minutes", "severity"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"not a rule setting: {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        setattr(rule, name, value)
    rule.full_clean()
    rule.save()
    audit_governance_event(
        event_type=EventType.ANOMALY_RULE_CHANGED,
        actor=actor,
        detail={"rule": rule.kind, **{k: str(v) for k, v in changes.items()}},
    )
    return rule


# ── anomaly rules ─────────────────────────────────────────────────────────────────────


def active_rules() -> dict[str, AnomalyRule]:
    """Enabled rules by kind (stored settings, else the defaults), re-read every SYNAPSE_ALERT_RULES_TTL s."""
    global _rules_cache
    loaded_at, rules = _rules_cache
    ttl = settings.SYNAPSE["ALERT_RULES_TTL"]
    if time.monotonic() - loaded_at >= ttl or not loaded_at:
        stored = {rule.kind: rule for rule in AnomalyRule.objects.all()}
        rules = {kind: stored.get(kind) or AnomalyRule.default(kind) for kind in DEFAULT_RULES}
        rules = {kind: rule for kind, rule in rules.items() if rule.enabled}
        _rules_cache = (time.monotonic(), rules)
    return rules


def _claim(kind: str, subject: str, rule: AnomalyRule) -> bool:
    """True for the one caller that may fire this incident; the rest wait out the cooldown."""
    seconds = rule.cooldown_minutes * 60
    # The claim's value is when it ends, so a worker that finds it knows how long it holds.
    claimed = bool(caches[COUNTERS].add(f"alert:{kind}:{subject}", int(time.time()) + seconds, seconds))
    if claimed:
        _cooldowns.hold(f"{kind}:{subject}", until=time.time() + seconds)
    return claimed


def _cooling(kind: str, subject: str) -> bool:
    if _cooldowns.holds(f"{kind}:{subject}"):
        return True
    ends = caches[COUNTERS].get(f"alert:{kind}:{subject}")
    if ends is None:
        return False
    # A claim written before its value was its end (1) is trusted for a minute at a time.
    _cooldowns.hold(f"{kind}:{subject}", until=ends if ends > 1 else time.time() + 60)
    return True


def alerts_observe_request(
    *,
    key: KeyScope | None,
    decision: Decision,
    client_ip: str,
    at: datetime,
    tokens: int = 0,
    spend: Iterable[SpendLevel] = (),
    tool_call: bool = False,
) -> list[Alert]:
    """Evaluate the anomaly rules for one finished request or tool call; returns the alerts it raised."""
    rules = active_rules()
    fired: list[Alert | None] = []
    if key is None:
        if decision == Decision.BLOCKED_AUTH and client_ip and (rule := rules.get(AlertKind.AUTH_FAILURES)):
            fired.append(_auth_failures(rule, client_ip=client_ip, at=at))
        return [a for a in fired if a]
    if decision in DLP_BLOCKS and (rule := rules.get(AlertKind.DLP_BLOCKS)):
        fired.append(_dlp_blocks(rule, key=key, at=at))
    if tool_call and decision in TOOL_REFUSALS and (rule := rules.get(AlertKind.TOOL_REFUSALS)):
        fired.append(_tool_refusals(rule, key=key, at=at))
    if decision in LIMIT_BREACHES and (rule := rules.get(AlertKind.LIMIT_BREACH)):
        fired.append(_limit_breach(rule, key=key, decision=decision, at=at))
    if rule := rules.get(AlertKind.USAGE_SPIKE):
        fired.append(_usage_spike(rule, key=key, at=at))
    if (rule := rules.get(AlertKind.OFF_HOURS)) and not key.is_business_time(at):
        fired.append(_off_hours(rule, key=key, at=at))
    if AlertKind.BUDGET_THRESHOLD in rules:
        fired.extend(_budget_thresholds(rules[AlertKind.BUDGET_THRESHOLD], levels=spend, at=at))
    return [a for a in fired if a]


def _auth_failures(rule: AnomalyRule, *, client_ip: str, at: datetime) -> Alert | None:
    # Counted on the counter store (fixed windows): the audit table has no index on the IP,
    # and an unauthenticated flood must not turn into a table scan per request.
    window = rule.window_minutes * 60
    bucket = int(at.timestamp()) // window
    counter = f"authfail:{client_ip}:{bucket}"
    counters = caches[COUNTERS]
    counters.add(counter, 0, window + 60)
    failures = counters.incr(counter)
    if failures < rule.threshold or not _claim(AlertKind.AUTH_FAILURES, client_ip, rule):
        return None
    return alert_fire(
        kind=AlertKind.AUTH_FAILURES,
        severity=rule.severity,
        title=f"{failures} failed authentications from {client_ip} within {rule.window_minutes} min",
        subject=client_ip,
        detail={"ip": client_ip, "failures": failures, "window_minutes": rule.window_minutes},
        at=at,
    )


def _key_incident(rule: AnomalyRule, *, key: KeyScope, at: datetime, matching: Q) -> tuple[QuerySet[AuditEvent], int] | None:
    """The key's rows in the rule's window that match, once there are `threshold` of them and this
    caller has claimed the incident (the others wait out the cooldown); else None."""
    subject = f"key:{key.key_id}"
    if _cooling(rule.kind, subject):
        return None
    since = at - timedelta(minutes=rule.window_minutes)
    rows = AuditEvent.objects.filter(matching, key_id=key.key_id, occurred_at__gte=since, occurred_at__lte=at)
    count = rows.count()
    if count < rule.threshold or not _claim(rule.kind, subject, rule):
        return None
    return rows, count


def _key_alert(rule: AnomalyRule, *, key: KeyScope, at: datetime, title: str, detail: dict[str, Any]) -> Alert | None:
    return alert_fire(
        kind=AlertKind(rule.kind),
        severity=rule.severity,
        title=title,
        subject=f"key:{key.key_id}",
        team_id=key.team_id,
        key_id=key.key_id,
        detail={**detail, "window_minutes": rule.window_minutes},
        at=at,
    )


def _dlp_blocks(rule: AnomalyRule, *, key: KeyScope, at: datetime) -> Alert | None:
    incident = _key_incident(rule, key=key, at=at, matching=Q(event_type__in=COUNTED_EVENTS, decision__in=DLP_BLOCKS))
    if incident is None:
        return None
    _, blocks = incident
    title = f"{blocks} DLP blocks for key '{key.name}' within {rule.window_minutes} min"
    return _key_alert(rule, key=key, at=at, title=title, detail={"blocks": blocks, "monitor": key.is_monitor})


def _tool_refusals(rule: AnomalyRule, *, key: KeyScope, at: datetime) -> Alert | None:
    """An agent that keeps reaching for tools it may not use (or feeding them secrets): often a
    prompt injection steering it, or a key issued for a narrower job than the one it is doing."""
    incident = _key_incident(rule, key=key, at=at, matching=Q(event_type=EventType.TOOL_CALL, decision__in=TOOL_REFUSALS))
    if incident is None:
        return None
    refused, count = incident
    tools = sorted(set(refused.values_list("model", flat=True)[:50]))
    title = f"{count} refused tool calls for key '{key.name}' within {rule.window_minutes} min"
    return _key_alert(rule, key=key, at=at, title=title, detail={"refusals": count, "tools": tools})


def _limit_breach(rule: AnomalyRule, *, key: KeyScope, decision: Decision, at: datetime) -> Alert | None:
    subject = f"key:{key.key_id}"
    if not _claim(AlertKind.LIMIT_BREACH, subject, rule):
        return None
    would = "would have been refused (monitor mode)" if decision.is_monitored else "was refused"
    return alert_fire(
        kind=AlertKind.LIMIT_BREACH,
        severity=rule.severity,
        title=f"A request of key '{key.name}' {would}: {decision.value.removeprefix('monitor_')}",
        subject=subject,
        team_id=key.team_id,
        key_id=key.key_id,
        detail={"decision": decision.value, "monitor": decision.is_monitored},
        at=at,
    )


def _usage_spike(rule: AnomalyRule, *, key: KeyScope, at: datetime) -> Alert | None:
    # Evaluated by the first request of each key in each minute (across all workers).
    minute = int(at.timestamp()) // 60
    check = f"spike-check:{key.key_id}:{minute}"
    if check in _spike_checks_seen:
        return None
    _spike_checks_seen.add(check)
    if not caches[COUNTERS].add(check, 1, 120):
        return None
    subject = f"key:{key.key_id}"
    if _cooling(AlertKind.USAGE_SPIKE, subject):
        return None
    recent_start = at - timedelta(minutes=rule.window_minutes)
    baseline_start = recent_start - timedelta(minutes=rule.baseline_minutes)
    rows = AuditEvent.objects.filter(
        event_type__in=COUNTED_EVENTS, key_id=key.key_id, occurred_at__gte=baseline_start, occurred_at__lte=at
    )
    recent_filter = Q(occurred_at__gte=recent_start)
    totals = rows.aggregate(
        recent=Count("id", filter=recent_filter),
        recent_prompt=Sum("prompt_tokens", filter=recent_filter),
        recent_completion=Sum("completion_tokens", filter=recent_filter),
        baseline=Count("id", filter=~recent_filter),
        baseline_prompt=Sum("prompt_tokens", filter=~recent_filter),
        baseline_completion=Sum("completion_tokens", filter=~recent_filter),
    )
    windows = max(1.0, rule.baseline_minutes / rule.window_minutes)
    recent, baseline = totals["recent"], totals["baseline"] / windows
    recent_tokens = (totals["recent_prompt"] or 0) + (totals["recent_completion"] or 0)
    baseline_tokens = ((totals["baseline_prompt"] or 0) + (totals["baseline_completion"] or 0)) / windows
    # A request spike, or a token spike. Tokens only count when there are some: steady traffic
    # that records none (refusals, backends without `usage`) is 0 ≥ factor × 0, not a spike.
    spiking = recent >= rule.factor * baseline or (recent_tokens > 0 and recent_tokens >= rule.factor * baseline_tokens)
    if recent < rule.threshold or not spiking or not _claim(AlertKind.USAGE_SPIKE, subject, rule):
        return None
    return alert_fire(
        kind=AlertKind.USAGE_SPIKE,
        severity=rule.severity,
        title=(
            f"Usage spike on key '{key.name}': {recent} requests / {recent_tokens} tokens in {rule.window_minutes} min "
            f"(baseline {baseline:.1f} / {baseline_tokens:.0f})"
        ),
        subject=subject,
        team_id=key.team_id,
        key_id=key.key_id,
        detail={
            "requests": recent,
            "tokens": recent_tokens,
            "baseline_requests": round(baseline, 2),
            "baseline_tokens": round(baseline_tokens, 2),
            "window_minutes": rule.window_minutes,
            "factor": rule.factor,
        },
        at=at,
    )


def _off_hours(rule: AnomalyRule, *, key: KeyScope, at: datetime) -> Alert | None:
    subject = f"team:{key.team_id}"
    if _cooling(AlertKind.OFF_HOURS, subject):
        return None
    start, end, days = key.business_hours
    stretch = off_hours_started(at, zone=key.zone(), start=start, end=end, days=days)
    since = max(at - timedelta(minutes=rule.window_minutes), stretch)
    count = AuditEvent.objects.filter(
        event_type=EventType.REQUEST, team_id=key.team_id, occurred_at__gte=since, occurred_at__lte=at
    ).count()
    if count < rule.threshold or not _claim(AlertKind.OFF_HOURS, subject, rule):
        return None
    return alert_fire(
        kind=AlertKind.OFF_HOURS,
        severity=rule.severity,
        title=f"{count} requests from team '{key.team_name}' outside its business hours",
        subject=subject,
        team_id=key.team_id,
        key_id=key.key_id,
        detail={"requests": count, "since": since.isoformat(), "time_zone": key.zone().key},
        at=at,
    )


def _budget_thresholds(rule: AnomalyRule, *, levels: Iterable[SpendLevel], at: datetime) -> list[Alert | None]:
    fired: list[Alert | None] = []
    for level in levels:
        budget = level.budget
        for percent in BUDGET_THRESHOLDS:
            dedupe = f"budget:{budget.kind}:{budget.object_id}:{budget.start:%Y%m%d}:{percent}"
            if level.fraction * 100 < percent or dedupe in _thresholds_seen:
                continue
            whose = f"key '{budget.name}'" if budget.kind == "key" else f"team '{budget.name}'"
            fired.append(
                alert_fire(
                    kind=AlertKind.BUDGET_THRESHOLD,
                    severity="critical" if percent >= 100 else rule.severity,
                    title=f"The budget of {whose} is {percent} % spent for the period from {budget.start:%Y-%m-%d}",
                    subject=f"{budget.kind}:{budget.object_id}",
                    team_id=budget.team_id,
                    key_id=budget.object_id if budget.kind == "key" else None,
                    detail={
                        "percent": percent,
                        "budget": str(budget.budget),
                        "period_start": budget.start.isoformat(),
                        "period_end": budget.end.isoformat(),
                    },
                    dedupe_key=dedupe,
                    at=at,
                )
            )
            # Only once the database has answered (fired, or already there): a failed write is retried.
            _thresholds_seen.add(dedupe)
    return fired
