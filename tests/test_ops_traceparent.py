"""W3C traceparent parsing: a valid header continues the client's trace, anything else starts one."""

from __future__ import annotations

import pytest

from routing.trace import current_traceparent, traceparent_headers
from synapse.tracing import parse, span_for

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_a_valid_header_continues_its_trace_with_a_new_span() -> None:
    span = span_for(f"00-{TRACE}-{SPAN}-01")
    assert span.trace_id == TRACE and span.span_id != SPAN and len(span.span_id) == 16
    assert span.traceparent == f"00-{TRACE}-{span.span_id}-01"


def test_the_sampled_flag_is_kept() -> None:
    assert span_for(f"00-{TRACE}-{SPAN}-00").flags == "00"


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper case is invalid
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-{SPAN}-01",  # forbidden version
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
    ],
)
def test_an_invalid_header_starts_a_new_trace(header: str) -> None:
    assert parse(header) is None
    span = span_for(header)
    assert span.trace_id != TRACE and len(span.trace_id) == 32 and span.flags == "01"


def test_a_future_version_may_carry_more_fields() -> None:
    assert parse(f"01-{TRACE}-{SPAN}-01-more") == (TRACE, "01")


def test_adapters_continue_the_current_requests_trace_and_send_nothing_outside_one() -> None:
    assert traceparent_headers() == {}
    token = current_traceparent.set(f"00-{TRACE}-{SPAN}-01")
    try:
        # Each upstream attempt is a child span: the request's trace id and flags, a span of its own.
        first, second = traceparent_headers()["traceparent"], traceparent_headers()["traceparent"]
        assert first.startswith(f"00-{TRACE}-") and first.endswith("-01") and second.startswith(f"00-{TRACE}-")
        assert len({first.split("-")[2], second.split("-")[2], SPAN}) == 3
    finally:
        current_traceparent.reset(token)
