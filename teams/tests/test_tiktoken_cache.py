"""What teams/tiktoken_cache.py relies on in tiktoken: where its file cache lives, how a file
there is named, and the URL and hash its `o200k_base` reads. If an upgrade fails here, fix that
one module (tiktoken may then offer a public way to register local encoding files)."""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import pytest
import tiktoken.load
import tiktoken_ext.openai_public

from teams import tiktoken_cache
from teams.tiktoken_cache import O200K_SHA256, O200K_URL, cache_path, o200k_seed


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    def no_network(blobpath: str) -> bytes:
        raise AssertionError(f"tiktoken tried to fetch {blobpath}: the cache was not used")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    return tmp_path


def test_it_seeds_the_url_and_hash_tiktoken_reads() -> None:
    source = inspect.getsource(tiktoken_ext.openai_public.o200k_base)
    assert O200K_URL in source and O200K_SHA256 in source


def test_it_puts_the_file_where_tiktoken_reads_it_without_the_network(cache: Path) -> None:
    path = o200k_seed()
    assert path.parent == cache
    assert tiktoken.load.read_file_cached(O200K_URL, O200K_SHA256) == path.read_bytes()
    ranks = tiktoken_ext.openai_public.o200k_base()["mergeable_ranks"]
    assert len(ranks) == 199_998 and ranks[b"hello"] == 24912


def test_it_replaces_a_cached_file_that_does_not_match(cache: Path) -> None:
    path = cache_path(O200K_URL)
    assert path is not None
    path.write_bytes(b"dGFtcGVyZWQ= 0\n")
    o200k_seed()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == O200K_SHA256


def test_it_follows_tiktokens_cache_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path))
    assert tiktoken_cache.cache_dir() == tmp_path
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken's "no cache": it would download
    assert tiktoken_cache.cache_dir() is None
    with pytest.raises(RuntimeError, match="cache is disabled"):
        o200k_seed()
