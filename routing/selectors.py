"""Reads for routing: which model a request may reach, through which backend."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from django.db import models

from .adapters import BackendConfig
from .mcp_client import McpTarget
from .models import Backend, BackendHealth, McpServer, Model
from .rows import Expr, Select


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


# A column named `backend.<field>` goes to that BackendConfig field, one named as a Route field
# to that field; `model_id` and `has_fallbacks` are for the lookup itself.
_ROUTE_COLUMNS: dict[str, str | Expr] = {
    "model_id": "m.id",
    "model": "m.name",
    "upstream_model": "m.upstream_model",
    "input_price_per_mtok": "m.input_price_per_mtok",
    "output_price_per_mtok": "m.output_price_per_mtok",
    "backend.name": "b.name",
    "backend.kind": "b.kind",
    "backend.base_url": "b.base_url",
    "backend.location": "b.location",
    "backend.api_key_env": "b.api_key_env",
    "backend.timeout": "b.timeout_seconds",
    "backend.options": "b.options",
    "backend.connect_timeout": "b.connect_timeout_seconds",
    "backend.first_byte_timeout": "b.first_byte_timeout_seconds",
    "backend.max_retries": "b.max_retries",
    "backend_failures": Expr("COALESCE(h.consecutive_failures, 0)", models.PositiveIntegerField()),
    "circuit_open_until": "h.open_until",
    "has_fallbacks": Expr("EXISTS (SELECT 1 FROM routing_modelfallback f WHERE f.model_id = m.id)", models.BooleanField()),
}
_TABLES = {"m": Model, "b": Backend, "h": BackendHealth}
_JOINS = """
      JOIN routing_backend b ON b.id = m.backend_id
      LEFT JOIN routing_backendhealth h ON h.backend_id = b.id
"""
# For a read that joins a model's route onto other tables (the key check: teams.selectors):
# its columns and tables (aliases m, b, h), and the joins from `m` on; `route_from_row` reads it.
ROUTE_COLUMNS: Mapping[str, str | Expr] = MappingProxyType(_ROUTE_COLUMNS)
ROUTE_TABLES: Mapping[str, type[models.Model]] = MappingProxyType(_TABLES)
ROUTE_JOINS = _JOINS
_ROUTE = Select(
    tables=_TABLES,
    columns=_ROUTE_COLUMNS,
    rest=f"""
      FROM teams_apikeymodel a
      JOIN routing_model m ON m.id = a.model_id
      {_JOINS}
     WHERE a.api_key_id = %s AND m.name = %s
    """,
)
# Fallbacks need not be on the key's allowlist: the chain is the operator's definition of
# how this model is served, as its backend is.
_FALLBACKS = Select(
    tables=_TABLES,
    columns=_ROUTE_COLUMNS,
    rest=f"""
      FROM routing_modelfallback l
      JOIN routing_model m ON m.id = l.fallback_id
      {_JOINS}
     WHERE l.model_id = %s
     ORDER BY l.position
    """,
)
_ROUTE_FIELDS = frozenset(field.name for field in fields(Route))


def _route(row: Mapping[str, Any], fallbacks: tuple[Route, ...] = ()) -> Route:
    """The one place a Route is built from the database."""
    backend = {name.removeprefix("backend."): value for name, value in row.items() if name.startswith("backend.")}
    return Route(
        **{name: value for name, value in row.items() if name in _ROUTE_FIELDS},
        backend=BackendConfig(**backend),
        fallbacks=fallbacks,
    )


def route_for_key(*, key_id: int, model: str) -> Route | None:
    """The route for `model` if that model is on the key's allowlist, else None.

    One query joins the allowlist, the model, its backend and the backend's circuit state: an
    unknown model and a model outside the allowlist are indistinguishable to the caller (both
    403). A second query reads the fallback chain, only for a model that has one.
    """
    return route_from_row(_ROUTE.one([key_id, model]))


def route_from_row(row: Mapping[str, Any] | None) -> Route | None:
    """The route in a row read with ROUTE_COLUMNS (None: no row, or its model columns are
    NULL, an outer join that found no model), with its fallback chain (a second query, only
    for a model that has one)."""
    if row is None or row["model_id"] is None:
        return None
    fallbacks = tuple(_route(link) for link in _FALLBACKS.all([row["model_id"]])) if row["has_fallbacks"] else ()
    return _route(row, fallbacks)


def mcp_targets(*, name: str | None = None) -> list[McpTarget]:
    """The registered MCP servers (or the one named) as call targets, in name order."""
    servers = McpServer.objects.order_by("name")
    if name is not None:
        servers = servers.filter(name=name)
    return [McpTarget(name=s.name, url=s.url, location=s.location, api_key_env=s.api_key_env, timeout=s.timeout) for s in servers]
