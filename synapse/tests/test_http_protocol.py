"""What synapse/http_protocol.py relies on in uvicorn's httptools protocol: fails by name when an
upgrade changes it (the behaviour itself is tested on the real server: tests/test_ops_slow_clients.py)."""

from __future__ import annotations

import inspect

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from synapse.http_protocol import HeadDeadlineProtocol, head_deadline_protocol


def test_the_uvicorn_members_it_overrides_still_exist() -> None:
    for name in ("connection_made", "on_message_begin", "on_headers_complete", "connection_lost"):
        assert callable(getattr(HttpToolsProtocol, name, None)), name
    init = inspect.getsource(HttpToolsProtocol.__init__)
    for attribute in ("self.loop", "self.transport", "self.cycle"):
        assert attribute in init, attribute


def test_each_worker_gets_its_own_deadline() -> None:
    strict, lax = head_deadline_protocol(2.0), head_deadline_protocol(0.0)
    assert strict.__mro__[1] is HeadDeadlineProtocol and strict.head_timeout == 2.0 and lax.head_timeout == 0.0
    assert HeadDeadlineProtocol.head_timeout == 10.0
