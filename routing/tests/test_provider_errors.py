"""How a provider's HTTP error becomes the UpstreamError the dispatcher and the client act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from routing.adapters.base import UpstreamError
from routing.adapters.errors import raise_for_upstream


def refusal(status: int, headers: dict[str, str]) -> UpstreamError:
    response = httpx.Response(status, headers=headers)
    with pytest.raises(UpstreamError) as caught:
        raise_for_upstream(response, b'{"error": {"message": "slow down"}}', provider="OpenAI")
    return caught.value


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),  # OpenAI/Azure: the precise one wins
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_it_reads_the_wait_the_provider_asks_for(headers: dict[str, str], expected: float | None) -> None:
    error = refusal(429, headers)
    assert (error.status, error.retryable, error.retry_after) == (429, True, expected)


def test_it_reads_a_retry_after_given_as_an_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    error = refusal(503, {"retry-after": format_datetime(when, usegmt=True)})
    assert error.retry_after is not None and 0 < error.retry_after <= 30


def test_a_retry_after_date_in_the_past_means_now() -> None:
    error = refusal(429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert error.retry_after == 0.0


AZURE_FILTERED = (
    b'{"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI\'s content management '
    b'policy.", "type": null, "param": "prompt", "code": "content_filter", "status": 400}}'
)


def test_a_providers_content_policy_refusal_keeps_its_name() -> None:
    with pytest.raises(UpstreamError) as caught:
        raise_for_upstream(httpx.Response(400), AZURE_FILTERED, provider="Azure OpenAI")
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (400, "content_filter", False)


def test_any_other_invalid_request_is_the_clients_to_fix() -> None:
    body = b'{"error": {"message": "Unrecognized request argument", "type": "invalid_request_error", "code": null}}'
    with pytest.raises(UpstreamError) as caught:
        raise_for_upstream(httpx.Response(400), body, provider="OpenAI")
    assert (caught.value.status, caught.value.code) == (400, "upstream_invalid_request")
