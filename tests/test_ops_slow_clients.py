"""Slow-trickle connections (issue 14: 300 connections sending a byte every 10 s all stayed
open): each request's head must arrive within SYNAPSE_HEADER_READ_TIMEOUT, or the worker
answers 408 and closes the connection, while normal requests are served meanwhile."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from conftest import Gateway, database_url_for_tests, start_gateway, stop_gateway
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer syn_x_y\r\nContent-Length: 2\r\n\r\n{}"


@pytest.fixture
def strict_gateway(django_db_blocker) -> Iterator[Gateway]:
    with django_db_blocker.unblock():
        url = database_url_for_tests()
    server = start_gateway(database_url=url, extra_env={"SYNAPSE_HEADER_READ_TIMEOUT": "3"})
    yield server
    stop_gateway(server)


def _closed_by_server(sock: socket.socket, answers: dict[int, bytes]) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        data = sock.recv(4096)
    except OSError:
        return True  # reset: closed
    answers[sock.fileno()] = answers.get(sock.fileno(), b"") + data
    return data == b"" or b"\r\n\r\n" in answers[sock.fileno()]


def test_trickling_connections_are_closed_and_normal_requests_still_served(strict_gateway: Gateway) -> None:
    port = int(strict_gateway.base_url.rsplit(":", 1)[1])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
    stop = threading.Event()

    def trickle() -> None:
        # One byte per connection at a time, a few bytes a second each: never a whole head.
        sent = 0
        while not stop.is_set() and sent < len(HEAD):
            for sock in socks:
                with contextlib.suppress(OSError):  # closed by the server
                    sock.send(HEAD[sent : sent + 1])
            sent += 1
            stop.wait(0.25)

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    answers: dict[int, bytes] = {}
    open_socks = set(socks)
    try:
        # While they trickle, the gateway answers others.
        assert httpx.get(f"{strict_gateway.base_url}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{strict_gateway.v1}/models", timeout=10).status_code == 401

        def all_closed() -> bool:
            for sock in list(open_socks):
                if _closed_by_server(sock, answers):
                    open_socks.discard(sock)
            return not open_socks

        assert wait_until(all_closed, timeout=30, interval=0.2), f"{len(open_socks)} of 300 still open"
        assert sender.is_alive()  # they were closed mid-head, not after a complete request
        timed_out = [a for a in answers.values() if a.startswith(b"HTTP/1.1 408")]
        assert len(timed_out) >= 290  # a reset may swallow the answer of a few
        assert httpx.get(f"{strict_gateway.base_url}/healthz", timeout=10).status_code == 200
    finally:
        stop.set()
        sender.join()
        for sock in socks:
            sock.close()


def test_a_connection_that_sends_nothing_is_closed_too(strict_gateway: Gateway) -> None:
    port = int(strict_gateway.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        answers: dict[int, bytes] = {}
        assert wait_until(lambda: _closed_by_server(sock, answers), timeout=20, interval=0.1)
        assert answers.get(sock.fileno(), b"").startswith(b"HTTP/1.1 408")


def test_a_client_that_sends_its_head_in_time_is_served_on_a_kept_alive_connection(strict_gateway: Gateway) -> None:
    with httpx.Client(base_url=strict_gateway.base_url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz").status_code == 200  # the same connection, a second head
