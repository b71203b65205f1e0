"""Writes for routing: config as code (YAML import) and the built-in mock backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from audit.models import EventType
from audit.services import audit_governance_event

from .adapters import ADAPTERS
from .dispatch import RECOVERED
from .fields import extra_field_problem
from .models import Backend, BackendHealth, Location, McpServer, Model, ModelFallback

BACKEND_FIELDS = {
    "name", "kind", "base_url", "api_key_env", "location", "timeout", "options",
    "connect_timeout", "first_byte_timeout", "max_retries", "extra_fields",
}  # fmt: skip
MODEL_FIELDS = {"name", "backend", "upstream_model", "input_price_per_mtok", "output_price_per_mtok", "fallbacks"}
MCP_SERVER_FIELDS = {"name", "url", "location", "api_key_env", "timeout"}
DOCUMENT_KEYS = {"backends", "models", "mcp_servers"}


@dataclass(slots=True)
class ImportSummary:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"routing imported: {len(self.created)} created, {len(self.updated)} updated, {len(self.unchanged)} unchanged"


def _price(value: Any, where: str) -> Decimal:
    try:
        price = Decimal(str(value if value is not None else 0))
    except InvalidOperation as exc:
        raise ValidationError(f"{where}: price must be a number") from exc
    if price < 0:
        raise ValidationError(f"{where}: price must not be negative")
    return price


def _upsert(
    model_class: type[Backend] | type[Model] | type[McpServer],
    name: str,
    values: dict[str, Any],
    summary: ImportSummary,
    label: str,
) -> Any:
    instance = model_class.objects.filter(name=name).first()
    if instance is None:
        instance = model_class(name=name, **values)
        instance.full_clean()
        instance.save()
        summary.created.append(f"{label} {name}")
        return instance
    if all(getattr(instance, attr) == value for attr, value in values.items()):
        summary.unchanged.append(f"{label} {name}")
        return instance
    for attr, value in values.items():
        setattr(instance, attr, value)
    instance.full_clean()
    instance.save()
    summary.updated.append(f"{label} {name}")
    return instance


@transaction.atomic
def routing_import(*, document: dict[str, Any], actor: AbstractBaseUser | None = None, source: str = "") -> ImportSummary:
    """Create or update backends, models and MCP servers from a routing document; idempotent.

    Strict: a key the document format does not know, at the top level or in any entry, is an
    error naming it (a misspelt `api_key_env` silently ignored would send no credential).
    """
    if not isinstance(document, dict):
        raise ValidationError("the routing file must be a mapping with 'backends', 'models' and 'mcp_servers'")
    unknown_keys = set(map(str, document)) - DOCUMENT_KEYS
    if unknown_keys:
        raise ValidationError(
            f"unknown key(s) at the top level: {', '.join(sorted(unknown_keys))} (expected {', '.join(sorted(DOCUMENT_KEYS))})"
        )
    for section in DOCUMENT_KEYS:
        if document.get(section) is not None and not isinstance(document[section], list):
            raise ValidationError(f"{section}: must be a list")
    summary = ImportSummary()
    for index, item in enumerate(document.get("backends") or []):
        where = f"backends[{index}]"
        if not isinstance(item, dict) or not item.get("name"):
            raise ValidationError(f"{where}: needs at least a name")
        unknown = set(item) - BACKEND_FIELDS
        if unknown:
            raise ValidationError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        kind = item.get("kind")
        if kind not in ADAPTERS:
            raise ValidationError(f"{where}: kind must be one of {', '.join(sorted(ADAPTERS))}")
        location = item.get("location")
        if location not in Location.values:
            raise ValidationError(f"{where}: location must be on_prem or cloud")
        values = {
            "kind": kind,
            "base_url": item.get("base_url", ""),
            "api_key_env": item.get("api_key_env", ""),
            "location": location,
            "timeout_seconds": item.get("timeout"),
            "connect_timeout_seconds": item.get("connect_timeout"),
            "first_byte_timeout_seconds": item.get("first_byte_timeout"),
            "max_retries": _retries(item.get("max_retries", 1), where),
            "options": _options(item, where),
        }
        _upsert(Backend, str(item["name"]), values, summary, "backend")
    for index, item in enumerate(document.get("models") or []):
        where = f"models[{index}]"
        if not isinstance(item, dict) or not item.get("name") or not item.get("backend"):
            raise ValidationError(f"{where}: needs a name and a backend")
        unknown = set(item) - MODEL_FIELDS
        if unknown:
            raise ValidationError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        backend = Backend.objects.filter(name=item["backend"]).first()
        if backend is None:
            raise ValidationError(f"{where}: unknown backend '{item['backend']}'")
        values = {
            "backend": backend,
            "upstream_model": item.get("upstream_model") or item["name"],
            "input_price_per_mtok": _price(item.get("input_price_per_mtok"), where),
            "output_price_per_mtok": _price(item.get("output_price_per_mtok"), where),
        }
        _upsert(Model, str(item["name"]), values, summary, "model")
    # Chains after all models exist: a fallback may be defined later in the same document.
    for index, item in enumerate(document.get("models") or []):
        if "fallbacks" in item:
            model = Model.objects.get(name=item["name"])
            if _fallbacks_set(model, item["fallbacks"] or [], f"models[{index}].fallbacks"):
                summary.updated.append(f"fallbacks of {model.name}")
    for index, item in enumerate(document.get("mcp_servers") or []):
        _mcp_server_import(item, f"mcp_servers[{index}]", summary, actor=actor, source=source)
    if summary.created or summary.updated:
        audit_governance_event(
            event_type=EventType.ROUTING_IMPORTED,
            actor=actor,
            detail={"source": source, "created": summary.created, "updated": summary.updated},
        )
    return summary


def _mcp_server_import(item: Any, where: str, summary: ImportSummary, *, actor: AbstractBaseUser | None, source: str) -> None:
    """Register or update one MCP server; each registration and change is its own audited event."""
    if not isinstance(item, dict) or not item.get("name") or not item.get("url"):
        raise ValidationError(f"{where}: needs a name and a url")
    unknown = set(map(str, item)) - MCP_SERVER_FIELDS
    if unknown:
        raise ValidationError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    location = item.get("location")
    if location not in Location.values:
        raise ValidationError(f"{where}: location must be on_prem or cloud")
    timeout = item.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 600):
        raise ValidationError(f"{where}: timeout must be a number of seconds, more than 0 and at most 600")
    name = str(item["name"])
    values = {
        "url": str(item["url"]),
        "location": location,
        "api_key_env": str(item.get("api_key_env") or ""),
        "timeout_seconds": float(timeout) if timeout is not None else None,
    }
    server = McpServer.objects.filter(name=name).first()
    before = {attr: getattr(server, attr) for attr in values} if server is not None else None
    try:
        server = _upsert(McpServer, name, values, summary, "mcp server")
    except ValidationError as exc:
        raise ValidationError(f"{where}: {'; '.join(exc.messages)}") from exc
    if before is None:
        detail = {"server": name, **values, "source": source}
        audit_governance_event(event_type=EventType.MCP_SERVER_REGISTERED, actor=actor, detail=detail)
    elif before != values:
        changed = {attr: [before[attr], value] for attr, value in values.items() if before[attr] != value}
        detail = {"server": name, "changed": changed, "source": source}
        audit_governance_event(event_type=EventType.MCP_SERVER_UPDATED, actor=actor, detail=detail)


def mcp_server_error_record(*, name: str, error: str) -> None:
    """Remember a server's latest failure for the console (runtime state, not a governance change)."""
    McpServer.objects.filter(name=name).update(last_error=error[:500], last_error_at=timezone.now())


def _options(item: dict[str, Any], where: str) -> dict[str, Any]:
    """The backend's options, with its `extra_fields` allowlist checked (never a template)."""
    options = item.get("options") or {}
    if not isinstance(options, dict):
        raise ValidationError(f"{where}: options must be a mapping")
    extra = item.get("extra_fields", options.get("extra_fields"))
    if extra is None:
        return options
    if not isinstance(extra, list):
        raise ValidationError(f"{where}: extra_fields must be a list of request field names")
    for name in extra:
        if (problem := extra_field_problem(name)) is not None:
            raise ValidationError(f"{where}: extra_fields: {problem}")
    return {**options, "extra_fields": sorted(set(extra))}


def _retries(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10:
        raise ValidationError(f"{where}: max_retries must be a whole number from 0 to 10")
    return value


def _fallbacks_set(model: Model, names: Any, where: str) -> bool:
    """Replace `model`'s fallback chain with the models named, in order; True if it changed."""
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValidationError(f"{where}: must be a list of model names")
    if len(set(names)) != len(names) or model.name in names:
        raise ValidationError(f"{where}: a chain names each model once and never the model itself")
    found = {m.name: m for m in Model.objects.filter(name__in=names)}
    if missing := [name for name in names if name not in found]:
        raise ValidationError(f"{where}: unknown model(s) {', '.join(missing)}")
    current = list(model.fallback_links.order_by("position").values_list("fallback__name", flat=True))
    if current == names:
        return False
    model.fallback_links.all().delete()
    ModelFallback.objects.bulk_create(
        ModelFallback(model=model, fallback=found[name], position=position) for position, name in enumerate(names)
    )
    return True


@transaction.atomic
def model_fallbacks_set(*, model: Model, fallbacks: list[str], actor: AbstractBaseUser | None = None) -> None:
    """Set a model's ordered fallback chain (by model names); audited like any routing change."""
    if _fallbacks_set(model, fallbacks, "fallbacks"):
        detail = {"model": model.name, "fallbacks": fallbacks}
        audit_governance_event(event_type=EventType.ROUTING_CHANGED, actor=actor, detail=detail)


def routing_import_yaml(*, text: str, actor: AbstractBaseUser | None = None, source: str = "") -> ImportSummary:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"not valid YAML: {exc}") from exc
    return routing_import(document=document, actor=actor, source=source)


def routing_ensure_mock(*, actor: AbstractBaseUser | None = None) -> ImportSummary:
    """The quick start's built-in on-prem `mock` backend and its `mock-small` model."""
    return routing_import(
        document={
            "backends": [{"name": "mock", "kind": "mock", "base_url": "", "location": "on_prem"}],
            "models": [{"name": "mock-small", "backend": "mock", "upstream_model": "mock-small"}],
        },
        actor=actor,
        source="built-in",
    )


def _field_changes(before: Any, after: Any) -> dict[str, list[str]]:
    """{field: [before, after]} over the row's editable columns, as text (prices stay exact)."""
    changes: dict[str, list[str]] = {}
    for column in type(after)._meta.concrete_fields:
        if column.primary_key or not column.editable:  # ids and auto timestamps are not edits
            continue
        old, new = column.value_from_object(before), column.value_from_object(after)
        if old != new:
            changes[column.name] = [str(old), str(new)]
    return changes


@transaction.atomic
def backend_save(*, backend: Backend, actor: AbstractBaseUser | None = None) -> Backend:
    """Admin edits of a backend; audited like an import, field by field (before → after)."""
    stored = Backend.objects.filter(pk=backend.pk).first()  # None for a new backend
    backend.full_clean()
    backend.save()
    detail: dict[str, Any] = {"backend": backend.name, "created": stored is None}
    if stored is not None:
        detail["changed"] = _field_changes(stored, backend)
        if not detail["changed"]:
            return backend
    audit_governance_event(event_type=EventType.ROUTING_CHANGED, actor=actor, detail=detail)
    return backend


@transaction.atomic
def model_save(*, model: Model, actor: AbstractBaseUser | None = None) -> Model:
    """Admin edits of a model (prices, upstream name, backend); recorded field by field."""
    stored = Model.objects.filter(pk=model.pk).first()  # None for a new model
    model.full_clean()
    model.save()
    detail: dict[str, Any] = {"model": model.name, "created": stored is None}
    if stored is not None:
        detail["changed"] = _field_changes(stored, model)
        if not detail["changed"]:
            return model
    audit_governance_event(event_type=EventType.ROUTING_CHANGED, actor=actor, detail=detail)
    return model


# ── circuit breaker ─────────────────────────────────────────────────────────────────────


def circuit_policy() -> tuple[int, float]:
    """(consecutive failures that open a backend's circuit, seconds it then stays open)."""
    options = settings.SYNAPSE
    return int(options.get("CIRCUIT_FAILURES", 5)), float(options.get("CIRCUIT_COOLDOWN", 30.0))


@transaction.atomic
def backend_health_settle(*, events: list[tuple[str, str, str]]) -> None:
    """Apply what one request's tries taught about its backends: (backend, FAILURE/RECOVERED, error code).

    Called in the request's audit write, so the breaker costs no extra database round trip, and
    only when something changed: a request whose backends were healthy and stay so writes nothing.
    Increments are single UPDATEs, so concurrent workers never lose a failure.
    """
    threshold, cooldown = circuit_policy()
    now = timezone.now()
    names = {name for name, _, _ in events}
    ids = dict(Backend.objects.filter(name__in=names).values_list("name", "pk"))
    for name, health, error in events:
        backend_id = ids.get(name)
        if backend_id is None:
            continue
        if health == RECOVERED:
            BackendHealth.objects.filter(backend_id=backend_id).update(consecutive_failures=0, open_until=None)
            continue
        BackendHealth.objects.get_or_create(backend_id=backend_id)
        BackendHealth.objects.filter(backend_id=backend_id).update(
            consecutive_failures=F("consecutive_failures") + 1,
            last_failure_at=now,
            last_error=error[:64],
            # The row's old count: this failure makes it `threshold`, or a trial after a
            # cool-down failed again: (re)open.
            open_until=Case(
                When(consecutive_failures__gte=threshold - 1, then=Value(now + timedelta(seconds=cooldown))),
                default=F("open_until"),
            ),
        )


@transaction.atomic
def backend_circuit_reset(*, backends: list[Backend], actor: AbstractBaseUser | None = None) -> int:
    """Close the circuits of `backends` now (an operator fixed them); audited."""
    names = [backend.name for backend in backends]
    count = BackendHealth.objects.filter(backend__in=backends).update(consecutive_failures=0, open_until=None)
    audit_governance_event(event_type=EventType.ROUTING_CHANGED, actor=actor, detail={"circuit_reset": names})
    return count
