"""Which address the audit row and the auth-failure rule attribute a request to."""

from __future__ import annotations

from typing import Any

import pytest

from synapse.views import client_ip

META = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.7, 10.0.0.9"}


def trust(settings: Any, proxies: int) -> None:
    settings.SYNAPSE = {**settings.SYNAPSE, "TRUSTED_PROXIES": proxies}


def test_without_trusted_proxies_the_header_is_ignored(settings: Any) -> None:
    trust(settings, 0)
    assert client_ip(META) == "10.0.0.5"


@pytest.mark.parametrize(("proxies", "expected"), [(1, "10.0.0.9"), (2, "203.0.113.7")])
def test_behind_proxies_the_entry_they_added_is_used_never_what_the_client_sent(
    settings: Any, proxies: int, expected: str
) -> None:
    trust(settings, proxies)
    assert client_ip(META) == expected


def test_a_short_header_falls_back_to_the_peer(settings: Any) -> None:
    trust(settings, 2)
    assert client_ip({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.7"}) == "10.0.0.5"
