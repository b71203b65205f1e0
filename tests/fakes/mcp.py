"""Real MCP servers for the /mcp gateway tests, built with the official SDK (`mcp` 2.x MCPServer).

Each runs the SDK's own Streamable HTTP app under uvicorn in a thread of the test process and
requires a bearer token, as a production tool server would. A thin ASGI layer in front records
every HTTP request's headers (to check which credential the gateway sent) and refuses a wrong
token with 401; the tools record the arguments they were called with.
"""

from __future__ import annotations

import functools
import inspect
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer


@dataclass
class Seen:
    method: str
    headers: dict[str, str]


@dataclass
class FakeMcpServer:
    name: str
    token: str
    tools: dict[str, Callable[..., Any]]
    seen: list[Seen] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def reset(self) -> None:
        self.seen.clear()
        self.calls.clear()

    def _app(self) -> Any:
        server = MCPServer(self.name)
        for tool_name, function in self.tools.items():
            server.tool(name=tool_name)(self._recording(tool_name, function))
        inner = server.streamable_http_app()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                self.seen.append(Seen(method=scope["method"], headers=headers))
                if headers.get("authorization") != f"Bearer {self.token}":
                    await send(
                        {"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]}
                    )
                    await send({"type": "http.response.body", "body": b'{"error": "invalid_token"}'})
                    return
            await inner(scope, receive, send)

        return app

    def _recording(self, tool_name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        calls = self.calls

        # wraps(): the SDK builds the tool's input schema from the original's signature.
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def recorded_async(**kwargs: Any) -> Any:
                calls.append((tool_name, dict(kwargs)))
                return await function(**kwargs)

            return recorded_async

        @functools.wraps(function)
        def recorded(**kwargs: Any) -> Any:
            calls.append((tool_name, dict(kwargs)))
            return function(**kwargs)

        return recorded

    def start(self) -> FakeMcpServer:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"fake MCP server {self.name} did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
