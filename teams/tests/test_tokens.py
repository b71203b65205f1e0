"""Prompt token counts: exact with tiktoken, offline; a conservative estimate for other models.

The offline test runs the counting in a fresh interpreter in which no socket can connect
and tiktoken's download cache is an empty directory, so an encoding that needed the
network (or a file cached by an earlier run) would fail there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from teams import tiktoken_cache, tokens
from teams.tokens import count_chat, count_input, encoding

ROOT = Path(__file__).resolve().parents[2]

# Published counts (OpenAI cookbook, "How to count tokens with tiktoken"), both encodings.
KNOWN = {
    "cl100k_base": {
        "hello world": [15339, 1917],
        "tiktoken is great!": [83, 1609, 5963, 374, 2294, 0],
        "antidisestablishmentarianism": 6,
        "2 + 2 = 4": 7,
        "お誕生日おめでとう": 9,
    },
    "o200k_base": {
        "hello world": [24912, 2375],
        "tiktoken is great!": [83, 8251, 2488, 382, 2212, 0],
        "antidisestablishmentarianism": 6,
        "2 + 2 = 4": 7,
        "お誕生日おめでとう": 8,
    },
}

OFFLINE = """
import json, socket, urllib.request

def refuse(*args, **kwargs):
    raise OSError("networking is disabled in this test")

socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse

blocked = []
for attempt in (lambda: socket.create_connection(("127.0.0.1", 9)),
                lambda: urllib.request.urlopen("https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken")):
    try:
        attempt()
    except OSError:
        blocked.append(True)

from teams.tokens import count_chat, encoding
texts = %(texts)s
result = {"blocked": blocked}
for name in ("cl100k_base", "o200k_base"):
    enc = encoding(name)
    result[name] = None if enc is None else {text: enc.encode_ordinary(text) for text in texts}
hello = [{"role": "user", "content": "hello world"}]
result["chat"] = {model: [count_chat(hello, model=model).tokens, count_chat(hello, model=model).exact,
                          count_chat(hello, model=model).encoding] for model in ("gpt-4o", "gpt-4", "gpt-5", "gpt-4.1-mini")}
print(json.dumps(result))
"""


def _expected(name: str, text: str, ids: list[int]) -> None:
    known = KNOWN[name][text]
    assert (ids if isinstance(known, list) else len(ids)) == known, (name, text, ids)


def test_it_counts_exactly_with_networking_unavailable(tmp_path: Path) -> None:
    texts = sorted(KNOWN["cl100k_base"])
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
        "TIKTOKEN_CACHE_DIR": str(cache),
        "DATA_GYM_CACHE_DIR": str(cache),
        "PYTHONPATH": str(ROOT),
    }
    run = subprocess.run(
        [sys.executable, "-c", OFFLINE % {"texts": repr(texts)}],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "could not be loaded offline" not in run.stderr
    result = json.loads(run.stdout)
    assert result["blocked"] == [True, True]  # the prelude really cut the network
    for name in ("cl100k_base", "o200k_base"):
        assert result[name] is not None, f"{name} did not load offline: {run.stderr}"
        for text in texts:
            _expected(name, text, result[name][text])
    # 3 per message + "user" (1) + "hello world" (2) + 3 to prime the reply.
    assert result["chat"] == {
        "gpt-4o": [9, True, "o200k_base"],
        "gpt-4": [9, True, "cl100k_base"],
        "gpt-5": [9, True, "o200k_base"],
        "gpt-4.1-mini": [9, True, "o200k_base"],
    }


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_the_encodings_match_the_published_counts(name: str) -> None:
    enc = encoding(name)
    assert enc is not None
    for text in KNOWN[name]:
        _expected(name, text, enc.encode_ordinary(text))


def test_other_models_are_estimated_above_cl100k() -> None:
    text = [{"role": "user", "content": "Summarise the attached claim in two sentences, please. " * 10}]
    exact = count_chat(text, model="gpt-4")
    estimate = count_chat(text, model="meta-llama/Meta-Llama-3-8B-Instruct")
    assert not estimate.exact and estimate.encoding == "cl100k_base"
    framing = 3 + 3
    assert estimate.tokens - framing == -(-(exact.tokens - framing) * 135 // 100)  # ceil(cl100k × 1.35)


def test_images_and_tools_are_reserved_and_token_ids_count_as_given() -> None:
    plain = count_chat([{"role": "user", "content": [{"type": "text", "text": "What is this?"}]}], model="gpt-4o")
    image = count_chat(
        [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {}}]}],
        model="gpt-4o",
    )
    assert image.tokens - plain.tokens == tokens.IMAGE_TOKENS
    tool = {"type": "function", "function": {"name": "lookup_claim", "parameters": {"type": "object"}}}
    assert (
        count_chat([{"role": "user", "content": "hi"}], model="gpt-4o", tools=[tool]).tokens
        > count_chat([{"role": "user", "content": "hi"}], model="gpt-4o").tokens
    )
    assert count_input([[1, 2, 3], [4, 5]], model="text-embedding-3-small").tokens == 5
    assert count_input("hello world", model="text-embedding-3-small").tokens == 2


def test_it_refuses_tampered_o200k_ranks_and_estimates_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiktoken_cache, "O200K_SHA256", "0" * 64)
    monkeypatch.setattr(tokens, "_encodings", {"cl100k_base": tokens.encoding("cl100k_base")})
    counted = count_chat([{"role": "user", "content": "hello world"}], model="gpt-4o")
    assert tokens._encodings["o200k_base"] is None
    assert not counted.exact and counted.tokens == 3 + 3 + -(-3 * 135 // 100)  # ceil((1 + 2) × 1.35) + framing
