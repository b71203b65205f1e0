"""The classification boundary: the one definition of which backends a request may reach.

A key bound to sensitive data may only reach on-premises backends. Everything that decides
where a request goes asks this module: the pipeline's check of the requested model before
anything is sent, and the dispatcher before every single upstream call, fallbacks included.
"""

from __future__ import annotations

from .adapters import BackendConfig


def may_reach(backend: BackendConfig, *, sensitive: bool) -> bool:
    return backend.is_on_prem or not sensitive
