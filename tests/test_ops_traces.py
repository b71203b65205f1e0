"""Traces over OTLP/HTTP to a real (fake) collector: the client's trace continues through the
gateway, one SERVER span per request with its stage spans and GenAI attributes, no prompt text."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import Gateway, database_url_for_tests, start_gateway, stop_gateway
from teams.services import IssuedKey

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
PROMPT = "Summarise claim 42 for the adjuster"


class Collector:
    """An OTLP/HTTP trace receiver: POST /v1/traces with a protobuf ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path == "/v1/traces":
                    collector.bodies.append(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[Any]:
        found = []
        for body in list(self.bodies):
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    found.extend(scope_spans.spans)
        return found


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    server = Collector()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def traced_gateway(django_db_setup, django_db_blocker, collector: Collector) -> Iterator[Gateway]:
    with django_db_blocker.unblock():
        url = database_url_for_tests()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    server = start_gateway(database_url=url, extra_env=env)
    yield server
    stop_gateway(server)


def attributes(span: Any) -> dict[str, Any]:
    values = {}
    for item in span.attributes:
        value = item.value
        values[item.key] = getattr(value, value.WhichOneof("value"))
    return values


def test_a_clients_trace_continues_through_the_gateway(
    traced_gateway: Gateway, collector: Collector, sensitive_key: IssuedKey
) -> None:
    response = httpx.post(
        f"{traced_gateway.v1}/chat/completions",
        json={"model": "mock-small", "messages": [{"role": "user", "content": PROMPT}]},
        headers={"authorization": f"Bearer {sensitive_key.plaintext}", "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
        timeout=30,
    )
    assert response.status_code == 200
    _, trace_id, gateway_span, _ = response.headers["traceparent"].split("-")
    assert trace_id == CLIENT_TRACE

    deadline = time.monotonic() + 15
    while True:
        spans = [s for s in collector.spans() if s.trace_id.hex() == CLIENT_TRACE]
        if {"synapse.scope", "synapse.audit"} <= {s.name for s in spans} and any(s.kind == 2 for s in spans):
            break
        assert time.monotonic() < deadline, [s.name for s in spans]
        time.sleep(0.2)

    (server,) = [s for s in spans if s.name == "POST /v1/chat/completions"]
    assert server.span_id.hex() == gateway_span and server.parent_span_id.hex() == CLIENT_SPAN
    assert server.kind == 2  # SERVER
    values = attributes(server)
    assert values["gen_ai.request.model"] == "mock-small" and values["gen_ai.operation.name"] == "chat"
    assert values["gen_ai.usage.input_tokens"] > 0 and values["gen_ai.usage.output_tokens"] > 0
    assert values["synapse.decision"] == "allowed" and values["http.response.status_code"] == 200
    assert [event.name for event in server.events] == ["upstream.attempt"]
    for stage in ("synapse.scope", "synapse.audit"):
        (child,) = [s for s in spans if s.name == stage]
        assert child.parent_span_id == server.span_id
    everything = b"".join(collector.bodies)
    assert PROMPT.encode() not in everything and sensitive_key.plaintext.encode() not in everything
