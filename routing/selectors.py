"""Reads for routing: which model a request may reach, through which backend."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Exists, OuterRef

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


def route_for_key(*, key_id: int, model: str) -> Route | None:
    """The route for `model` if that model is on the key's allowlist, else None.

    One query joins the allowlist, the model, its backend and the backend's circuit state: an
    unknown model and a model outside the allowlist are indistinguishable to the caller (both
    403). A second query reads the fallback chain, only for a model that has one.
    """
    row = (
        Model.objects.select_related("backend", "backend__health")
        .annotate(has_fallbacks=Exists(ModelFallback.objects.filter(model=OuterRef("pk"))))
        .filter(name=model, apikeymodel__api_key_id=key_id)
        .first()
    )
    if row is None:
        return None
    return _route(row, fallbacks=_fallbacks(row) if row.has_fallbacks else ())


def _fallbacks(row: Model) -> tuple[Route, ...]:
    # Fallbacks need not be on the key's allowlist: the chain is the operator's definition of
    # how this model is served, as its backend is.
    links = ModelFallback.objects.filter(model=row).select_related("fallback__backend", "fallback__backend__health")
    return tuple(_route(link.fallback) for link in links.order_by("position"))
