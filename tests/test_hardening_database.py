"""Fail fast, recover at once (issue 14): the gateway's database behind a TCP proxy this test
stops and starts (the shared PostgreSQL itself is never touched).

Before: with the database refusing connections each request waited ~20 s for its 503 (two
hops × a 10 s pool timeout), and the first requests after recovery failed too while the pool's
reconnect back-off (1 s, doubling) ran its course.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from audit.models import AuditEvent
from conftest import Gateway, database_url_for_tests, free_port, start_gateway, stop_gateway
from teams.services import IssuedKey

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]


class Proxy:
    """A loopback TCP relay to PostgreSQL that can refuse connections and drop live ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(5)

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()  # PostgreSQL "went away" mid-connection
        self.writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers.update((writer, up_writer))

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


@pytest.fixture(scope="module")
def proxied(django_db_setup, django_db_blocker) -> Iterator[tuple[Gateway, Proxy]]:
    with django_db_blocker.unblock():
        url = urlsplit(database_url_for_tests())
    proxy = Proxy((url.hostname or "127.0.0.1", url.port or 5432))
    proxy.start()
    netloc = url.netloc.rsplit(":", 1)[0] if url.port else url.netloc
    server = start_gateway(database_url=urlunsplit(url._replace(netloc=f"{netloc}:{proxy.port}")), workers=1)
    yield server, proxy
    stop_gateway(server)
    proxy.loop.call_soon_threadsafe(proxy.loop.stop)


def chat(gateway: Gateway, key: str) -> httpx.Response:
    body = {"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{gateway.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60)


def test_a_lost_database_is_a_503_within_2_s_and_the_first_request_after_it_is_served(
    proxied: tuple[Gateway, Proxy], sensitive_key: IssuedKey
) -> None:
    gateway, proxy = proxied
    assert chat(gateway, sensitive_key.plaintext).status_code == 200
    proxy.stop()
    try:
        for _ in range(3):  # the pool's connections broken, then none to be had
            started = time.monotonic()
            response = chat(gateway, sensitive_key.plaintext)
            elapsed = time.monotonic() - started
            assert response.status_code == 503 and response.json()["error"]["code"] == "service_unavailable"
            assert elapsed < 2.0, elapsed
        time.sleep(3)  # long enough for a doubling back-off to have left the pool asleep
    finally:
        proxy.start()
    recovered = chat(gateway, sensitive_key.plaintext)
    assert recovered.status_code == 200, recovered.text
    assert AuditEvent.objects.filter(request_id=recovered.headers["x-request-id"], status=200).exists()
