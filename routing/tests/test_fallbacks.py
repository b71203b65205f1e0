"""A model's fallback chain: configured as code or in the console, read with the route."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEvent
from routing.models import Backend, Model
from routing.selectors import route_for_key
from routing.services import routing_import, routing_import_yaml
from teams.services import IssuedKey

pytestmark = pytest.mark.django_db

CHAIN: dict[str, Any] = {
    "backends": [
        {"name": "vllm-b", "kind": "vllm", "base_url": "http://10.0.0.2:8000/v1", "location": "on_prem",
         "timeout": 60, "connect_timeout": 2, "first_byte_timeout": 15, "max_retries": 3},
    ],
    "models": [
        {"name": "llama-3-8b", "backend": "local-vllm", "upstream_model": "meta-llama/Meta-Llama-3-8B-Instruct",
         "fallbacks": ["llama-3-8b-b", "gpt-4o-mini"]},
        {"name": "llama-3-8b-b", "backend": "vllm-b", "upstream_model": "llama3:8b"},
    ],
}  # fmt: skip


def chain(name: str) -> list[str]:
    return list(Model.objects.get(name=name).fallback_links.values_list("fallback__name", flat=True))


def test_the_routing_file_sets_an_ordered_chain_and_backend_reliability(routing: None) -> None:
    summary = routing_import(document=CHAIN)

    assert chain("llama-3-8b") == ["llama-3-8b-b", "gpt-4o-mini"]
    assert "fallbacks of llama-3-8b" in summary.updated
    config = Backend.objects.get(name="vllm-b").config()
    assert (config.timeout, config.connect_timeout, config.first_byte_timeout, config.max_retries) == (60, 2, 15, 3)
    event = AuditEvent.objects.filter(event_type="routing_imported").latest("id")
    assert "fallbacks of llama-3-8b" in event.detail["updated"]


def test_the_import_is_idempotent_and_can_reorder_and_clear_the_chain(routing: None) -> None:
    routing_import(document=CHAIN)
    assert routing_import(document=CHAIN).updated == []

    reordered: dict[str, Any] = {"models": [{**CHAIN["models"][0], "fallbacks": ["gpt-4o-mini", "llama-3-8b-b"]}]}
    routing_import(document=reordered)
    assert chain("llama-3-8b") == ["gpt-4o-mini", "llama-3-8b-b"]

    routing_import(document={"models": [{**CHAIN["models"][0], "fallbacks": []}]})
    assert chain("llama-3-8b") == []


def test_a_model_without_fallbacks_in_the_file_keeps_its_chain(routing: None) -> None:
    routing_import(document=CHAIN)
    routing_import(document={"models": [{k: v for k, v in CHAIN["models"][0].items() if k != "fallbacks"}]})

    assert chain("llama-3-8b") == ["llama-3-8b-b", "gpt-4o-mini"]


@pytest.mark.parametrize(
    ("fallbacks", "message"),
    [
        (["nope"], "unknown model"),
        (["llama-3-8b"], "never the model itself"),
        (["mock-small", "mock-small"], "each model once"),
        ("mock-small", "list of model names"),
    ],
)
def test_the_import_rejects_a_bad_chain_and_changes_nothing(routing: None, fallbacks: Any, message: str) -> None:
    document = {"models": [{"name": "llama-3-8b", "backend": "local-vllm", "fallbacks": fallbacks}]}

    with pytest.raises(ValidationError, match=message):
        routing_import(document=document)

    assert chain("llama-3-8b") == []


def test_the_yaml_file_takes_fallbacks(routing: None) -> None:
    routing_import_yaml(
        text="""
models:
  - name: llama-3-8b
    backend: local-vllm
    upstream_model: meta-llama/Meta-Llama-3-8B-Instruct
    fallbacks: [mock-small, gpt-4o-mini]
"""
    )

    assert chain("llama-3-8b") == ["mock-small", "gpt-4o-mini"]


def test_a_model_used_as_a_fallback_cannot_be_deleted(routing: None) -> None:
    routing_import(document=CHAIN)

    with pytest.raises(Exception, match="protected"):
        Model.objects.filter(name="llama-3-8b-b").delete()


def test_the_route_carries_the_chain_whatever_the_keys_allowlist(sensitive_key: IssuedKey) -> None:
    routing_import(document=CHAIN)

    route = route_for_key(key_id=sensitive_key.api_key.pk, model="llama-3-8b")

    assert route is not None
    # gpt-4o-mini is neither on this sensitive key's allowlist nor on-prem: it is still in the
    # chain; the dispatcher is what refuses to use it for this key.
    assert [(f.model, f.upstream_model, f.backend.location) for f in route.fallbacks] == [
        ("llama-3-8b-b", "llama3:8b", "on_prem"),
        ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "cloud"),
    ]
    assert route.fallbacks[0].backend.max_retries == 3


def test_a_route_without_a_chain_costs_one_query(sensitive_key: IssuedKey) -> None:
    with CaptureQueriesContext(connection) as queries:
        route = route_for_key(key_id=sensitive_key.api_key.pk, model="llama-3-8b")

    assert route is not None and route.fallbacks == ()
    assert len(queries) == 1


def test_the_console_edits_the_chain_and_audits_it(approver: Any, routing: None) -> None:
    console = Client()
    console.force_login(approver)
    model = Model.objects.get(name="llama-3-8b")
    url = reverse("admin:routing_model_change", args=[model.pk])

    response = console.post(
        url,
        {
            "name": model.name,
            "backend": model.backend_id,
            "upstream_model": model.upstream_model,
            "input_price_per_mtok": "0",
            "output_price_per_mtok": "0",
            "fallbacks": "mock-small, gpt-4o-mini",
        },
    )

    assert response.status_code == 302, response.content
    assert chain("llama-3-8b") == ["mock-small", "gpt-4o-mini"]
    event = AuditEvent.objects.filter(event_type="routing_changed", detail__fallbacks__isnull=False).latest("id")
    assert (event.actor, event.detail["fallbacks"]) == ("alice", ["mock-small", "gpt-4o-mini"])
    listing = console.get(reverse("admin:routing_model_changelist"))
    assert "mock-small → gpt-4o-mini" in listing.content.decode()


def test_the_console_refuses_an_unknown_fallback(approver: Any, routing: None) -> None:
    console = Client()
    console.force_login(approver)
    model = Model.objects.get(name="llama-3-8b")

    response = console.post(
        reverse("admin:routing_model_change", args=[model.pk]),
        {"name": model.name, "backend": model.backend_id, "upstream_model": model.upstream_model,
         "input_price_per_mtok": "0", "output_price_per_mtok": "0", "fallbacks": "ghost"},
    )  # fmt: skip

    assert response.status_code == 200
    assert "Unknown model(s): ghost" in response.content.decode()
    assert chain("llama-3-8b") == []
