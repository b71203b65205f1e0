"""The per-request route read: raw SQL, yet every value typed as the ORM gives it, on both databases."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError
from django.utils import timezone

from routing.models import Backend, BackendHealth, Model
from routing.rows import Select
from routing.selectors import route_for_key
from routing.services import routing_import
from teams.services import IssuedKey

pytestmark = pytest.mark.django_db


@pytest.mark.sqlite
def test_a_route_reads_every_column_as_the_orm_would(cloud_key: IssuedKey) -> None:
    routing_import(
        document={
            "backends": [
                {"name": "azure-eu", "kind": "azure_openai", "base_url": "https://eu.example.com", "location": "cloud",
                 "options": {"api_version": "2024-10-21", "drop_params": ["temperature"]},
                 "timeout": 45.5, "connect_timeout": 1.5, "first_byte_timeout": 9, "max_retries": 0},
            ],
            "models": [
                {"name": "gpt-4o-eu", "backend": "azure-eu", "upstream_model": "gpt4o-deployment",
                 "input_price_per_mtok": "2.123456", "output_price_per_mtok": "10"},
                {"name": "gpt-4o-mini", "backend": "openai", "upstream_model": "gpt-4o-mini-2024-07-18",
                 "input_price_per_mtok": "0.15", "output_price_per_mtok": "0.60", "fallbacks": ["gpt-4o-eu"]},
            ],
        }
    )  # fmt: skip
    open_until = timezone.now() + timedelta(seconds=30)
    BackendHealth.objects.create(backend=Backend.objects.get(name="openai"), consecutive_failures=4, open_until=open_until)

    route = route_for_key(key_id=cloud_key.api_key.pk, model="gpt-4o-mini")

    assert route is not None
    assert (route.input_price_per_mtok, route.output_price_per_mtok) == (Decimal("0.15"), Decimal("0.60"))
    assert isinstance(route.input_price_per_mtok, Decimal)
    assert (route.backend_failures, route.circuit_open_until) == (4, open_until)  # aware, to the microsecond
    assert route.backend == Backend.objects.get(name="openai").config()
    [fallback] = route.fallbacks
    assert fallback.backend == Backend.objects.get(name="azure-eu").config()  # options a dict, timeouts floats
    assert fallback.backend.options["drop_params"] == ["temperature"]
    eu = Model.objects.get(name="gpt-4o-eu")
    assert (fallback.model, fallback.upstream_model) == ("gpt-4o-eu", "gpt4o-deployment")
    assert (fallback.input_price_per_mtok, fallback.output_price_per_mtok) == (eu.input_price_per_mtok, eu.output_price_per_mtok)
    assert (fallback.backend_failures, fallback.circuit_open_until, fallback.fallbacks) == (0, None, ())


@pytest.mark.sqlite
def test_a_model_off_the_keys_allowlist_has_no_route(cloud_key: IssuedKey) -> None:
    assert route_for_key(key_id=cloud_key.api_key.pk, model="mock-small") is None
    assert route_for_key(key_id=cloud_key.api_key.pk, model="no-such-model") is None


@pytest.mark.sqlite
def test_a_failed_read_raises_djangos_database_error() -> None:
    # The pipeline answers a database failure before the upstream call with its 503 by
    # catching Django's DatabaseError: a raw read must raise that class, not the driver's.
    broken = Select(tables={"m": Model}, columns={"name": "m.name"}, rest="FROM no_such_table m")
    with pytest.raises(DatabaseError):
        broken.all([])
