"""What each backend kind declares it serves is what it serves."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from routing.adapters import ADAPTERS, Adapter, BackendConfig, Operation, UpstreamError

METHODS = {Operation.CHAT: "chat", Operation.CHAT_STREAM: "chat_stream", Operation.EMBEDDINGS: "embeddings"}


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_a_kind_implements_exactly_the_operations_it_declares(kind: str) -> None:
    adapter_class = ADAPTERS[kind]
    for operation, method in METHODS.items():
        implemented = getattr(adapter_class, method) is not getattr(Adapter, method)
        assert implemented == adapter_class.supports(operation), (kind, operation)
    assert adapter_class.label


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_an_undeclared_operation_is_refused_as_the_requests_fault_without_a_call(kind: str) -> None:
    config = BackendConfig(name=kind, kind=kind, base_url="http://127.0.0.1:9", location="on_prem")

    async def main() -> list[int]:
        statuses = []
        async with httpx.AsyncClient() as client:
            adapter = ADAPTERS[kind](client=client, backend=config, default_timeout=1)
            for operation in set(Operation) - adapter.operations:
                with pytest.raises(UpstreamError) as caught:
                    result: Any = getattr(adapter, METHODS[operation])({"model": "m", "messages": [], "input": "x"})
                    if asyncio.iscoroutine(result):
                        await result
                statuses.append(caught.value.status)
        return statuses

    assert set(asyncio.run(main())) <= {400}
