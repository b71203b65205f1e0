"""Reads for routing: which model a request may reach, through which backend."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from .adapters import BackendConfig
from .models import BackendHealth, Model, ModelFallback


@dataclass(frozen=True, slots=True)
class Route:
    model: str
    upstream_model: str
    backend: BackendConfig
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal
    # The model's fallback chain, in order. All of it: which links a request may use is
    # decided at dispatch (routing.boundary), where every upstream call passes.
    fallbacks: tuple[Route, ...] = ()
    # The backend's circuit breaker as read with the route (before the upstream call).
    backend_failures: int = 0
    circuit_open_until: datetime | None = None

    def candidates(self) -> tuple[Route, ...]:
        return (self, *self.fallbacks)

    def extra_fields(self) -> frozenset[str]:
        """Request fields beyond the standard ones that every backend of the chain accepts
        (`extra_fields` in the routing file): a fallback must not get what it did not allow."""
        allowed = []
        for route in self.candidates():
            names = route.backend.options.get("extra_fields")  # a row edited by hand may hold anything
            allowed.append(frozenset(n for n in names if isinstance(n, str)) if isinstance(names, list) else frozenset())
        return frozenset.intersection(*allowed)


def _route(row: Model, fallbacks: tuple[Route, ...] = ()) -> Route:
    try:
        health: BackendHealth | None = row.backend.health
    except BackendHealth.DoesNotExist:
        health = None
    return Route(
        model=row.name,
        upstream_model=row.upstream_model,
        backend=row.backend.config(),
        input_price_per_mtok=row.input_price_per_mtok,
        output_price_per_mtok=row.output_price_per_mtok,
        fallbacks=fallbacks,
        backend_failures=health.consecutive_failures if health else 0,
        circuit_open_until=health.open_until if health else None,
    )


# Raw SQL on the hot path: on these machines compiling the equivalent ORM query costs ~1 ms
# per request, five times what the database takes to answer it.
_ROUTE_SQL = """
    SELECT m.id, m.name, m.upstream_model, m.input_price_per_mtok, m.output_price_per_mtok,
           b.name, b.kind, b.base_url, b.location, b.api_key_env, b.timeout_seconds, b.options,
           b.connect_timeout_seconds, b.first_byte_timeout_seconds, b.max_retries,
           h.consecutive_failures, h.open_until,
           EXISTS (SELECT 1 FROM routing_modelfallback f WHERE f.model_id = m.id)
      FROM teams_apikeymodel a
      JOIN routing_model m ON m.id = a.model_id
      JOIN routing_backend b ON b.id = m.backend_id
      LEFT JOIN routing_backendhealth h ON h.backend_id = b.id
     WHERE a.api_key_id = %s AND m.name = %s
"""


def route_for_key(*, key_id: int, model: str) -> Route | None:
    """The route for `model` if that model is on the key's allowlist, else None.

    One query joins the allowlist, the model, its backend and the backend's circuit state: an
    unknown model and a model outside the allowlist are indistinguishable to the caller (both
    403). A second query reads the fallback chain, only for a model that has one.
    """
    with connection.cursor() as cursor:
        cursor.execute(_ROUTE_SQL, [key_id, model])
        row = cursor.fetchone()
    if row is None:
        return None
    (model_id, name, upstream_model, input_price, output_price,
     backend, kind, base_url, location, api_key_env, timeout, options,
     connect_timeout, first_byte_timeout, max_retries,
     failures, open_until, has_fallbacks) = row  # fmt: skip
    if isinstance(options, str):  # SQLite keeps JSON as text
        options = json.loads(options)
    config = BackendConfig(
        name=backend,
        kind=kind,
        base_url=base_url,
        location=location,
        api_key_env=api_key_env,
        timeout=timeout,
        options=dict(options or {}),
        connect_timeout=connect_timeout,
        first_byte_timeout=first_byte_timeout,
        max_retries=max_retries,
    )
    return Route(
        model=name,
        upstream_model=upstream_model,
        backend=config,
        input_price_per_mtok=_decimal(input_price),
        output_price_per_mtok=_decimal(output_price),
        fallbacks=_fallbacks(model_id) if has_fallbacks else (),
        backend_failures=failures or 0,
        circuit_open_until=_aware(open_until) if open_until is not None else None,
    )


def _decimal(value: Decimal | float | int | str) -> Decimal:
    # PostgreSQL returns Decimal; SQLite a float or an int, which str() renders exactly as stored.
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite hands back text for raw queries
        value = datetime.fromisoformat(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)


def _fallbacks(model_id: int) -> tuple[Route, ...]:
    # Fallbacks need not be on the key's allowlist: the chain is the operator's definition of
    # how this model is served, as its backend is.
    links = ModelFallback.objects.filter(model_id=model_id).select_related("fallback__backend", "fallback__backend__health")
    return tuple(_route(link.fallback) for link in links.order_by("position"))
