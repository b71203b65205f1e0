"""Forward the body to the upstream with httpx and pass its answer back: what any Django gateway costs."""

from __future__ import annotations

import os

import httpx
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9000") + "/v1/chat/completions"
_client: httpx.AsyncClient | None = None


@csrf_exempt
async def chat(request: HttpRequest) -> HttpResponse:
    global _client
    if _client is None:  # one client per worker, made on its event loop
        _client = httpx.AsyncClient(timeout=30)
    upstream = await _client.post(UPSTREAM, content=request.body, headers={"content-type": "application/json"})
    return HttpResponse(upstream.content, status=upstream.status_code, content_type="application/json")
