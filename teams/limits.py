"""Rate limits, token reservations and budgets: reserve before the upstream call, settle after.

One request, in the pipeline's pre-upstream database hop (`limits_reserve`):

1. per-request caps bound to the key: max messages, max prompt tokens (400), max_tokens
   ceiling (the request is clamped to it, never refused for it);
2. requests per minute, per key and per team, in django-ratelimit's windows;
   then requests in flight: a leased slot of the key's `max_concurrent` (teams/concurrency.py);
3. tokens per minute: prompt tokens (counted now) + the completion cap are *held* on the
   per-minute counter, so concurrent requests cannot all squeeze under the limit;
4. budgets: the worst-case cost is held on the key's and the team's period spend counters.

Then, in the hop that writes the audit row (`limits_settle`), every hold is corrected to the
upstream's real `usage` and cost, and the in-flight slot is given back. All counters live in the `counters` cache (CounterCache on
the database, or Redis), where each step is one atomic operation: limits are exact however
many workers and replicas serve the traffic.

In monitor mode (`KeyScope.is_monitor`) the same counting happens and breaches are
reported, but holds are kept rather than rolled back and the pipeline lets the request go.

This module reports facts (`Breach`: which limit, the figures a client may learn); the
pipeline decides what the client is told (`synapse.errors.limit_exceeded`).
"""

from __future__ import annotations

import logging
import time
import zlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone
from django_ratelimit import ALL
from django_ratelimit.core import EXPIRATION_FUDGE, _get_window, _make_cache_key

from .budgets import BudgetScope, spent_in_period, to_nano
from .concurrency import Slot, concurrency_acquire, concurrency_release
from .periods import period_bounds
from .scope_stamp import ScopeChangedError
from .selectors import KeyScope
from .tokens import TokenCount, count_chat, count_input

logger = logging.getLogger("synapse.limits")

COUNTERS = "counters"  # the cache alias (settings.CACHES)
MINUTE = 60
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Window:
    """A per-minute limit as the x-ratelimit-* headers report it."""

    limit: int
    remaining: int
    reset: int  # seconds until the window ends


class BreachKind(StrEnum):
    """Which limit a request is over."""

    RPM = "rpm"  # requests per minute, the key's
    TEAM_RPM = "team_rpm"
    TPM = "tpm"  # tokens per minute, the key's
    TEAM_TPM = "team_tpm"
    BUDGET = "budget"  # the key's budget for the period
    TEAM_BUDGET = "team_budget"
    MAX_MESSAGES = "max_messages"  # per-request caps bound to the key
    MAX_PROMPT_TOKENS = "max_prompt_tokens"
    CONCURRENCY = "concurrency"  # the key's requests in flight at once

    @property
    def is_team(self) -> bool:
        return self in (BreachKind.TEAM_RPM, BreachKind.TEAM_TPM, BreachKind.TEAM_BUDGET)


@dataclass(frozen=True, slots=True)
class Breach:
    """A limit the request is over, with the figures the client may be told (never spend)."""

    kind: BreachKind
    limit: int = 0  # the cap (max messages, max prompt tokens)
    needed: int = 0  # what the request asked for: messages, prompt tokens, or tokens to hold (tpm)
    retry_after: int = 0  # seconds until the per-minute window resets
    renews_at: datetime | None = None  # a budget's next period


@dataclass(slots=True)
class Hold:
    """An amount held on one counter until settlement corrects it to the real figure."""

    key: str
    amount: int
    budget: BudgetScope | None = None


@dataclass(frozen=True, slots=True)
class SpendLevel:
    """A budget's running spend right after a settlement (for the threshold alerts)."""

    budget: BudgetScope
    spent_nano: int

    @property
    def fraction(self) -> float:
        limit = self.budget.limit_nano
        return self.spent_nano / limit if limit else 0.0


@dataclass(slots=True)
class Reservation:
    """What one request holds, and what the limits decided about it."""

    prompt: TokenCount | None = None
    completion_cap: int = 0
    clamps: dict[str, int] = field(default_factory=dict)  # output caps to send upstream instead of the client's
    token_holds: list[Hold] = field(default_factory=list)
    spend_holds: list[Hold] = field(default_factory=list)
    requests: Window | None = None
    tokens: Window | None = None
    in_flight: Window | None = None  # the key's concurrent requests (reset: unused)
    slot: Slot | None = None  # the in-flight slot held until settlement
    breaches: list[Breach] = field(default_factory=list)
    unavailable: bool = False
    settled: bool = False
    committed: bool = False  # the holds were committed as they were made (`limits_reserve(commit=True)`)
    stamp: int | None = None  # the kept scope's stamp, checked by the first hold (`limits_reserve`)
    stamp_checked: bool = False

    def rolled_back_with_transaction(self) -> bool:
        """Forget the holds if the counter store is the database (they go with a rolled-back
        transaction); True then. Redis holds, and holds already committed, outlive a failure
        and are settled as usual."""
        if not counters_transactional() or self.committed:
            return False
        self.token_holds.clear()
        self.spend_holds.clear()
        return True

    @property
    def reserved_tokens(self) -> int:
        return (self.prompt.tokens if self.prompt else 0) + self.completion_cap

    def headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers, for the limits that apply to this key."""
        headers: dict[str, str] = {}
        for name, window in (("requests", self.requests), ("tokens", self.tokens)):
            if window is not None:
                headers[f"x-ratelimit-limit-{name}"] = str(window.limit)
                headers[f"x-ratelimit-remaining-{name}"] = str(max(0, window.remaining))
                headers[f"x-ratelimit-reset-{name}"] = f"{max(0, window.reset)}s"
        if self.in_flight is not None:
            # Not one of OpenAI's: named after them, for the one limit they do not have.
            headers["x-ratelimit-limit-concurrent"] = str(self.in_flight.limit)
            headers["x-ratelimit-remaining-concurrent"] = str(max(0, self.in_flight.remaining))
        return headers


# ── reserve ─────────────────────────────────────────────────────────────────────────────


def counters_transactional() -> bool:
    """Whether the counter store is the database (its writes join the caller's transaction)."""
    return bool(getattr(caches[COUNTERS], "transactional", False))


def limits_reserve(
    *,
    scope: KeyScope,
    endpoint: str,
    body: dict[str, Any],
    model: str,
    input_price_per_mtok: Decimal,
    output_price_per_mtok: Decimal,
    system_prompt: str = "",
    now: datetime | None = None,
    commit: bool = False,
    stamp: int | None = None,
) -> Reservation:
    """Count, check and hold everything one request needs; never raises for a breach.

    `body` is the client's request; `system_prompt` the bound one the backend will also see.
    In enforce mode the first breach stops the checks that follow (nothing more is held).
    `commit`: the caller's transaction ends with the holds, and may be committed with them in
    the same round trip (the database store does, when it is the outermost transaction).
    `stamp`: the scope was kept between requests under this stamp (teams/scope_cache.py); the
    first hold on the database runs only while it is unchanged, else `ScopeChangedError` is raised
    with nothing held. `Reservation.stamp_checked` says whether a hold checked it.
    """
    reservation = Reservation(stamp=stamp)
    now = now or timezone.now()
    try:
        _caps(reservation, scope=scope, endpoint=endpoint, body=body, model=model, system_prompt=system_prompt)
        if reservation.breaches and not scope.is_monitor:
            return reservation
        prices = (input_price_per_mtok, output_price_per_mtok)
        if scope.max_concurrent:
            # The in-flight slot between the rpm and the token counters, as the steps go.
            _hold(reservation, scope=scope, planned=_requests_per_minute(scope), commit=commit)
            if not reservation.breaches or scope.is_monitor:
                _in_flight(reservation, scope=scope)
            if not reservation.breaches or scope.is_monitor:
                planned = _tokens_and_spend(reservation, scope=scope, now=now, prices=prices)
                _hold(reservation, scope=scope, planned=planned, commit=commit)
        else:
            planned = _requests_per_minute(scope) + _tokens_and_spend(reservation, scope=scope, now=now, prices=prices)
            _hold(reservation, scope=scope, planned=planned, commit=commit)
    except ScopeChangedError:
        raise
    except Exception:
        # Redis down, database gone: the pipeline fails closed for enforced keys (503).
        logger.exception("the counter store failed while reserving for key %s", scope.key_id)
        reservation.unavailable = True
    return reservation


def limits_count_call(*, scope: KeyScope, now: datetime | None = None) -> Reservation:
    """Count one tool call against the key's and the team's requests per minute.

    A tool call uses no tokens and costs nothing the gateway can price, so only the rpm
    windows apply; they are the same counters /v1 requests use (a key's rpm covers both).
    """
    reservation = Reservation()
    try:
        _hold(reservation, scope=scope, planned=_requests_per_minute(scope))
    except Exception:
        logger.exception("the counter store failed while counting a tool call for key %s", scope.key_id)
        reservation.unavailable = True
    return reservation


def _caps(
    reservation: Reservation, *, scope: KeyScope, endpoint: str, body: dict[str, Any], model: str, system_prompt: str
) -> None:
    if endpoint == "embeddings":
        reservation.prompt = count_input(body.get("input"), model=model)
    else:
        given = body.get("messages")
        messages: list[Any] = given if isinstance(given, list) else []
        bound = [{"role": "system", "content": system_prompt}] if system_prompt else []
        reservation.prompt = count_chat([*bound, *messages], model=model, tools=body.get("tools"))
        if scope.max_messages is not None and len(messages) > scope.max_messages:
            reservation.breaches.append(Breach(BreachKind.MAX_MESSAGES, limit=scope.max_messages, needed=len(messages)))
        reservation.completion_cap = _completion_cap(reservation, scope=scope, body=body)
    if scope.max_prompt_tokens is not None and reservation.prompt.tokens > scope.max_prompt_tokens:
        reservation.breaches.append(
            Breach(BreachKind.MAX_PROMPT_TOKENS, limit=scope.max_prompt_tokens, needed=reservation.prompt.tokens)
        )


OUTPUT_CAPS = ("max_tokens", "max_completion_tokens")  # chat's two names for one output cap


def _completion_cap(reservation: Reservation, *, scope: KeyScope, body: dict[str, Any]) -> int:
    """The most completion tokens this request can produce, and what the upstream is told.

    The upstream's output cap must be what is held, or the hold means nothing: the key's
    ceiling clamps every cap the client sent (both names, when both are), and whenever a token
    or budget limit counts this request a cap is sent even if the client set none.
    """
    sent = {name: value for name in OUTPUT_CAPS if (value := _positive(body.get(name))) is not None}
    requested = max(sent.values(), default=None)
    ceiling = scope.max_tokens
    if ceiling is not None and (requested is None or requested > ceiling):
        # Clamp rather than refuse: clients send generous defaults, and a shorter answer
        # within the approved ceiling is what the approver agreed to.
        requested = ceiling
    cap = requested if requested is not None else settings.SYNAPSE["DEFAULT_COMPLETION_RESERVE"]
    counted = any((scope.tpm, scope.team_tpm, scope.budget is not None, scope.team_budget is not None))
    if ceiling is not None or counted:
        reservation.clamps = {name: min(value, cap) for name, value in sent.items() if value > cap} or (
            {} if sent else {"max_tokens": cap}
        )
    choices = _positive(body.get("n")) or 1
    return cap * choices


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# One counter to hold on, as the counter store's `hold` takes it: key, amount, ttl (seconds a
# new or restarted row lives; None: the row must exist), limit (a total over it is a breach),
# give_back (a breach takes the amount back off). A plain tuple: the store needs no class of ours.
Count = tuple[str, int, float | None, int | None, bool]


@dataclass(frozen=True, slots=True)
class _Planned:
    """One counter a reservation holds on, and what its total means."""

    kind: BreachKind
    count: Count
    reset: int = 0  # rpm and tpm: seconds until the window ends
    budget: BudgetScope | None = None  # spend: the budget, seeded from the audit log if missing


def _requests_per_minute(scope: KeyScope) -> list[_Planned]:
    planned = []
    for kind, group, ident, limit in (
        (BreachKind.RPM, "synapse.key.rpm", f"k{scope.key_id}", scope.rpm),
        (BreachKind.TEAM_RPM, "synapse.team.rpm", f"t{scope.team_id}", scope.team_rpm),
    ):
        if not limit or not getattr(settings, "RATELIMIT_ENABLE", True):
            continue
        # django-ratelimit's fixed window and counter key, as its `get_usage` makes them; the
        # count is made here, with the other counters (`_hold`). Refused requests count too.
        rate = f"{limit}/m"
        window = _get_window(ident, MINUTE)
        key = _make_cache_key(group, window, rate, ident, ALL)
        count: Count = (key, 1, MINUTE + EXPIRATION_FUDGE, limit, False)
        planned.append(_Planned(kind, count, reset=window - int(time.time())))
    return planned


def _tokens_and_spend(
    reservation: Reservation, *, scope: KeyScope, now: datetime, prices: tuple[Decimal, Decimal]
) -> list[_Planned]:
    planned = []
    # Tokens per minute: the prompt and the completion cap, held until settlement.
    amount = reservation.reserved_tokens
    for kind, ident, limit in (
        (BreachKind.TPM, f"k{scope.key_id}", scope.tpm),
        (BreachKind.TEAM_TPM, f"t{scope.team_id}", scope.team_tpm),
    ):
        if limit:
            end = _window_end(ident, MINUTE)
            count: Count = (f"tpm:{ident}:{end}", amount, MINUTE + 5, limit, not scope.is_monitor)
            planned.append(_Planned(kind, count, reset=end - int(time.time())))
    # Budgets: the worst-case cost, held on the period's spend counters.
    input_price, output_price = prices
    prompt = reservation.prompt.tokens if reservation.prompt else 0
    worst = to_nano((Decimal(prompt) * input_price + Decimal(reservation.completion_cap) * output_price) / _MILLION)
    for budget in budget_scopes(scope, now=now):
        kind = BreachKind.BUDGET if budget.kind == "key" else BreachKind.TEAM_BUDGET
        planned.append(_Planned(kind, (budget.counter_key, worst, None, budget.limit_nano, not scope.is_monitor), budget=budget))
    return planned


def _hold(reservation: Reservation, *, scope: KeyScope, planned: list[_Planned], commit: bool = False) -> None:
    """Add to the planned counters in order, stopping at the first breach in enforce mode,
    where a breached token or spend counter gets its amount back (this request will not run).

    On the database, in one statement (`CounterCache.hold`, migration synapse/0002): every
    request of a key updates the same rows, each locked until the request's holds commit, so a
    round trip per counter would keep them locked for several; with `commit`, the transaction's
    COMMIT goes in that round trip too. Elsewhere (Redis, SQLite), one atomic operation per
    counter."""
    counters = caches[COUNTERS]
    hold = getattr(counters, "hold", None) if getattr(counters, "holds_in_one_statement", False) else None
    stop = not scope.is_monitor
    seeded: set[BudgetScope] = set()
    while planned:
        counts = [item.count for item in planned]
        if hold is not None:
            # The stamp lives with the keys: a hold checks it only on the keys' database.
            checks = (
                reservation.stamp is not None
                and not reservation.stamp_checked
                and getattr(counters, "alias", None) == DEFAULT_DB_ALIAS
            )
            totals, committed = hold(counts, stop=stop, commit=commit, stamp=reservation.stamp if checks else None)
            reservation.stamp_checked = reservation.stamp_checked or checks
            reservation.committed = reservation.committed or committed
        else:
            totals = _hold_each(counters, counts, stop=stop)
        for item, total in zip(planned, totals, strict=False):
            if total is not None:
                _apply(reservation, item=item, total=total)
        if not totals or totals[-1] is not None:
            return
        # A spend counter that is missing (a new period, or a store that lost it): seeded from
        # the audit log, then the counters from it on are held again.
        missing = planned[len(totals) - 1]
        if missing.budget is None or missing.budget in seeded:
            raise RuntimeError(f"the counter {missing.count[0]} is missing after it was seeded")
        seeded.add(missing.budget)
        _spend_seed(missing.budget)
        planned = planned[len(totals) - 1 :]


def _hold_each(counters: Any, counts: list[Count], *, stop: bool) -> list[int | None]:
    """`_hold` on a store without a one-statement hold: an atomic operation per counter."""
    totals: list[int | None] = []
    for key, amount, ttl, limit, give_back in counts:
        try:
            total: int | None = int(counters.incr(key, amount))
        except ValueError:
            if ttl is None:
                total = None
            elif counters.add(key, amount, ttl):
                total = amount
            else:
                total = int(counters.incr(key, amount))  # another process created it first
        totals.append(total)
        if total is None:
            break
        if limit is not None and total > limit:
            if give_back:
                counters.incr(key, -amount)
            if stop:
                break
    return totals


def _apply(reservation: Reservation, *, item: _Planned, total: int) -> None:
    """What one counter's total (before any give-back) means for the reservation."""
    key, amount, _, limit, give_back = item.count
    assert limit is not None
    over = total > limit
    if item.budget is not None:
        if not (over and give_back):
            reservation.spend_holds.append(Hold(key=key, amount=amount, budget=item.budget))
        if over:
            # No figures: the caller learns that the budget is spent and when it renews, nothing more.
            reservation.breaches.append(Breach(item.kind, renews_at=item.budget.end))
        return
    if item.kind in (BreachKind.RPM, BreachKind.TEAM_RPM):
        window = Window(limit=limit, remaining=limit - total, reset=item.reset)
        if reservation.requests is None or window.remaining < reservation.requests.remaining:
            reservation.requests = window
        if over:
            reservation.breaches.append(Breach(item.kind, limit=limit, retry_after=window.reset))
        return
    if over and give_back:
        total -= amount  # given back: this request will not run
    else:
        reservation.token_holds.append(Hold(key=key, amount=amount))
    window = Window(limit=limit, remaining=limit - total, reset=item.reset)
    if reservation.tokens is None or window.remaining < reservation.tokens.remaining:
        reservation.tokens = window
    if over:
        reservation.breaches.append(Breach(item.kind, limit=limit, needed=amount, retry_after=item.reset))


def _in_flight(reservation: Reservation, *, scope: KeyScope) -> None:
    limit = scope.max_concurrent
    if not limit:
        return
    reservation.slot, in_use = concurrency_acquire(key_id=scope.key_id, limit=limit)
    reservation.in_flight = Window(limit=limit, remaining=limit - in_use, reset=0)
    if reservation.slot is None:
        # Monitor mode: recorded, and the request runs without a slot (it holds none to give back).
        reservation.breaches.append(Breach(BreachKind.CONCURRENCY, limit=limit, needed=limit + 1, retry_after=1))


def _window_end(ident: str, period: int) -> int:
    """End of the current fixed window; jittered per identity like django-ratelimit's."""
    now = int(time.time())
    end = now - (now % period) + (zlib.crc32(ident.encode()) % period)
    return end + period if end < now else end


def budget_scopes(scope: KeyScope, *, now: datetime) -> list[BudgetScope]:
    """The budgets that apply to a key's requests right now (key's first, then team's)."""
    start, end = period_bounds(period=scope.budget_period, zone=scope.zone(), at=now)
    found = []
    if scope.budget is not None:
        found.append(BudgetScope("key", scope.key_id, scope.name, scope.team_id, scope.budget, start, end))
    if scope.team_budget is not None:
        found.append(BudgetScope("team", scope.team_id, scope.team_name, scope.team_id, scope.team_budget, start, end))
    return found


def _spend_seed(budget: BudgetScope) -> None:
    """Create a period's missing spend counter from the audit log (another process may first)."""
    spent = spent_in_period(kind=budget.kind, object_id=budget.object_id, start=budget.start, end=budget.end)
    ttl = (budget.end - timezone.now()).total_seconds() + 2 * 86400
    caches[COUNTERS].add(budget.counter_key, to_nano(spent), ttl)


# ── settle ──────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class Settlement:
    """One request's real usage, to correct its holds with."""

    reservation: Reservation
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: Decimal | None
    reached_upstream: bool


# The order counter rows are locked in: a transaction that updates several (a reservation, or
# a batch of settlements committed with their audit rows) takes them in this order, token
# counters before spend counters, each kind by key, so two never wait on each other.
_TOKENS, _SPEND = 0, 1


def limits_settle(
    reservation: Reservation,
    *,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    cost: Decimal | None,
    reached_upstream: bool,
) -> list[SpendLevel]:
    """Correct every hold to the real usage; returns the budgets' spend afterwards.

    A request that never reached a backend used nothing. One that did but reported no usage
    keeps its holds (the worst case is the only honest figure then).
    """
    settlement = Settlement(reservation, prompt_tokens, completion_tokens, cost, reached_upstream)
    return limits_settle_many([settlement])[0]


def limits_settle_many(settlements: list[Settlement]) -> list[list[SpendLevel]]:
    """Settle several requests at once (the audit group commit's companion write): the
    corrections to one counter are summed into one statement, and counters are updated in
    the lock order above; on the database, all or nothing. Returns each request's budget
    levels, in order."""
    deltas: dict[tuple[int, str], int] = {}
    spent: list[list[tuple[Hold, int]]] = []
    counters = caches[COUNTERS]
    # On the database a failure rolls the corrections back, so a settlement is marked done only
    # once they are made (a retry makes them again); Redis keeps what it applied before a failure.
    transactional = counters_transactional()
    for settlement in settlements:
        reservation = settlement.reservation
        spent.append([])
        if reservation.settled:
            continue
        reservation.settled = not transactional
        usage_known = settlement.prompt_tokens is not None or settlement.completion_tokens is not None
        for hold in reservation.token_holds:
            if usage_known:
                used = (settlement.prompt_tokens or 0) + (settlement.completion_tokens or 0)
            else:
                used = hold.amount if settlement.reached_upstream else 0
            if used != hold.amount:
                deltas[(_TOKENS, hold.key)] = deltas.get((_TOKENS, hold.key), 0) + used - hold.amount
        for hold in reservation.spend_holds:
            if settlement.cost is not None:
                amount = to_nano(settlement.cost)
            else:
                amount = hold.amount if settlement.reached_upstream else 0
            # Always touched (even by 0): the budget alerts need the total after this request.
            deltas[(_SPEND, hold.key)] = deltas.get((_SPEND, hold.key), 0) + amount - hold.amount
            spent[-1].append((hold, amount))
    ordered = [(key, delta) for (_, key), delta in sorted(deltas.items())]
    adjust = getattr(counters, "adjust", None) if getattr(counters, "holds_in_one_statement", False) else None
    # In-flight slots last, by key: a slot is only ever deleted by the request that took it.
    slots = sorted((s.reservation.slot for s in settlements if s.reservation.slot is not None), key=lambda x: x.key)
    adjustments = 0 if not ordered else 1 if adjust is not None else len(ordered)
    statements = adjustments + len(slots)
    # Atomic on the database: one statement is by itself (no BEGIN and COMMIT round trips, the
    # usual case), several share a transaction.
    with _atomic(counters) if transactional and statements > 1 else nullcontext():
        if ordered and adjust is not None:
            totals = dict(zip((key for key, _ in ordered), adjust(ordered), strict=True))  # one statement
        else:
            totals = {key: _adjust(counters, key, delta) for key, delta in ordered}
        for slot in slots:
            try:
                concurrency_release(slot)
            except Exception:
                # The store is down: the slot frees itself when its lease runs out (teams/concurrency.py).
                logger.exception("could not give back an in-flight slot of %s", slot.key)
    for settlement in settlements:
        settlement.reservation.settled = True
        settlement.reservation.slot = None
    return [
        [
            SpendLevel(budget=hold.budget, spent_nano=total)
            for hold, amount in holds
            if hold.budget is not None and amount > 0 and (total := totals.get(hold.key)) is not None
        ]
        for holds in spent
    ]


def _atomic(counters: Any) -> transaction.Atomic:
    return transaction.atomic(using=counters.alias)  # synapse.cache.CounterCache


def _adjust(counters: Any, key: str, delta: int) -> int | None:
    try:
        return int(counters.incr(key, delta))
    except ValueError:
        return None  # the window already expired: nothing left to correct
