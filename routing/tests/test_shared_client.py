"""The worker's shared upstream client is stateless: no cookie one answer sets reaches another request."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from routing.adapters.http import shared_client


class _Handler(BaseHTTPRequestHandler):
    received: list[str | None] = []

    def do_GET(self) -> None:
        type(self).received.append(self.headers.get("Cookie"))
        self.send_response(200)
        self.send_header("Set-Cookie", "__cf_bm=tenant-a; Path=/")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    _Handler.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_a_cookie_set_by_one_answer_is_neither_kept_nor_sent(upstream: str) -> None:
    async def twice() -> None:
        client = shared_client()
        for _ in range(2):
            response = await client.get(upstream)
            assert response.headers["set-cookie"].startswith("__cf_bm=")  # the answer itself is passed through
        assert not client.cookies
        await client.aclose()

    asyncio.run(twice())
    assert _Handler.received == [None, None]
