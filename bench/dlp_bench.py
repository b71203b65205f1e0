"""DLP scan throughput with every shipped pack enabled (baseline, gdpr, hipaa, pci-dss).

    .venv/bin/python bench/dlp_bench.py            # about a minute
    .venv/bin/python bench/dlp_bench.py --quick    # smaller inputs

Prints MB/s (input bytes per second of wall time, one core) for:
- clean text: prose, code and JSON with no personal data or secrets (warm: best of 5 runs),
  alone and with the decoded views a request is scanned with (escapes, entities, encodings);
- PII-dense text: a hit every ~120 bytes, redaction included;
- adversarial inputs, each on a freshly compiled scanner (cold automaton, the worst case):
  random digits/hex/separators (makes the RE2 sets build a new state per byte), a million
  one-digit groups (card validator windows), decodable base64, e-mail fragments, and
  non-ASCII evasion text (normalisation slow path);
- the streaming window on clean text fed in 4-character deltas;
- a catastrophic-backtracking expression, (a+)+$, with Python's re and with RE2.

Pure engine: no database, no Django.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlp import decode
from dlp.engine import PatternSpec, Scanner, scanner_for
from dlp.packfile import all_pack_specs, pack_names
from dlp.stream import StreamGuard

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "by",
    "this",
    "are",
    "from",
    "at",
    "or",
    "an",
    "have",
    "not",
    "which",
    "but",
    "all",
    "they",
    "their",
    "more",
    "been",
    "has",
    "one",
    "when",
    "would",
    "there",
    "can",
    "will",
    "what",
    "about",
    "out",
    "up",
    "them",
    "into",
    "some",
    "could",
    "other",
    "than",
    "then",
    "now",
    "only",
    "its",
    "over",
    "also",
    "after",
    "use",
    "two",
    "how",
    "our",
    "work",
    "first",
    "well",
    "way",
    "even",
    "new",
    "want",
    "because",
    "any",
    "these",
    "give",
    "day",
    "most",
    "us",
    "report",
    "revenue",
    "growth",
    "quarter",
    "customer",
    "service",
    "team",
    "project",
    "meeting",
    "schedule",
    "deliver",
    "review",
    "update",
    "policy",
    "claim",
    "summary",
    "analysis",
    "model",
    "prompt",
    "response",
    "gateway",
]

CODE = '''def handle(request, *, retries: int = 3) -> dict:
    """Fetch the order and return its summary."""
    for attempt in range(retries):
        result = client.get(f"/orders/{request.order_id}", timeout=30)
        if result.status_code == 200:
            return {"status": "ok", "items": len(result.json()["items"])}
    raise RuntimeError("upstream failed")
'''
JSON = '{"model": "gpt-4o-mini", "temperature": 0.2, "messages": [{"role": "user", "content": "Summarise the meeting notes"}]}\n'


def pii_value(rng: random.Random) -> str:
    """A fresh, valid value of a random kind, so validators do real work on every hit."""
    from stdnum import iban, luhn

    kind = rng.randrange(9)
    if kind == 0:
        return f"{rng.choice(WORDS)}.{rng.choice(WORDS)}{rng.randrange(100)}@example.com"
    if kind == 1:
        return f"+44 20 {rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}"
    if kind == 2:
        body = "4" + "".join(str(rng.randrange(10)) for _ in range(14))
        card = body + luhn.calc_check_digit(body)
        return " ".join(card[i : i + 4] for i in range(0, 16, 4))
    if kind == 3:
        return f"{rng.randrange(100, 665)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}"
    if kind == 4:
        bban = "WEST" + "".join(str(rng.randrange(10)) for _ in range(14))
        return iban.format("GB" + iban.calc_check_digits("GB00" + bban) + bban)
    if kind == 5:
        return f"DOB: {rng.randrange(1950, 2005)}-{rng.randrange(1, 12):02d}-{rng.randrange(1, 28):02d}"
    if kind == 6:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
    if kind == 7:
        return f"MRN: {rng.randrange(10**7, 10**8)}"
    return f"key AKIA{''.join(rng.choice('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567') for _ in range(16))}"


def clean_text(size: int, rng: random.Random) -> str:
    parts: list[str] = []
    total = 0
    while total < size:
        kind = rng.random()
        if kind < 0.7:
            sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))).capitalize()
            if rng.random() < 0.3:
                sentence += f" in {rng.randint(1990, 2030)}, up {rng.randint(1, 99)}%"
            piece = sentence + ". "
        elif kind < 0.85:
            piece = CODE
        else:
            piece = JSON
        parts.append(piece)
        total += len(piece)
    return "".join(parts)[:size]


def pii_dense_text(size: int, rng: random.Random) -> str:
    parts: list[str] = []
    total = 0
    while total < size:
        piece = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 16))) + f" {pii_value(rng)}. "
        parts.append(piece)
        total += len(piece)
    return "".join(parts)[:size]


def adversarial_inputs(size: int, rng: random.Random) -> dict[str, str]:
    alphabet = "0123456789abcdefABCDEF-_.@:/+= \n"
    return {
        "random digits/hex/separators": "".join(rng.choice(alphabet) for _ in range(size)),
        "one-digit groups '4 4 4 ...'": ("4 " * (size // 2))[:size],
        "decodable base64 runs": ("QUFBQUFBQUFBQUFB " * (size // 17))[:size],
        "e-mail fragments 'a@a@a@...'": ("a@" * (size // 2))[:size],
        "non-ASCII evasions": ("４\u200b１\u200b１\u200b１ ٤١١١ Ａ\u00adＫ " * (size // 20))[:size],
    }


def mb_per_s(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


def best_of(runs: int, action: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller inputs (for a smoke run)")
    args = parser.parse_args()
    clean_size, dense_size, hostile_size = (1 << 20, 256 << 10, 128 << 10) if args.quick else (8 << 20, 1 << 20, 1 << 20)
    rng = random.Random(2024)
    specs: list[PatternSpec] = all_pack_specs()

    def fresh() -> Scanner:
        return scanner_for(specs, "prompt")

    scanner = fresh()
    print(f"packs: {', '.join(pack_names())}; {len(scanner.specs)} prompt patterns, {len(scanner._sets)} RE2 sets")
    print(f"python {sys.version.split()[0]}, one core\n")

    clean = clean_text(clean_size, rng)
    scanner.scan(clean)  # warm the automata once, as a running worker would be
    seconds = best_of(5, lambda: scanner.scan(clean))
    assert scanner.scan(clean).hits == [], "the clean corpus must be clean"
    print(f"clean text        {len(clean) / 1e6:6.1f} MB  {mb_per_s(len(clean.encode()), seconds):8.1f} MB/s   (warm, best of 5)")
    # What a request really gets: the raw scan plus the decoded views (dlp/decode.py).
    seconds = best_of(5, lambda: decode.scan(scanner, clean))
    assert decode.scan(scanner, clean).hits == [], "the clean corpus must be clean in its decoded views too"
    print(f"  + decoded views {len(clean) / 1e6:6.1f} MB  {mb_per_s(len(clean.encode()), seconds):8.1f} MB/s   (warm, best of 5)")

    dense = pii_dense_text(dense_size, rng)
    result = scanner.scan(dense)
    seconds = best_of(3, lambda: scanner.scan(dense).redacted())
    print(
        f"PII-dense text    {len(dense) / 1e6:6.1f} MB  {mb_per_s(len(dense.encode()), seconds):8.1f} MB/s   "
        f"({len(result.hits)} hits, one per {len(dense) // max(1, len(result.hits))} bytes, redaction included)"
    )

    print("\nadversarial (fresh scanner each: cold automata, the worst case)")
    for name, text in adversarial_inputs(hostile_size, rng).items():
        cold = fresh()
        started = time.perf_counter()
        cold.scan(text)
        seconds = time.perf_counter() - started
        warm = best_of(2, partial(cold.scan, text))
        nbytes = len(text.encode())
        print(
            f"  {name:32s} {nbytes / 1e6:5.2f} MB  cold {mb_per_s(nbytes, seconds):7.2f} MB/s  warm {mb_per_s(nbytes, warm):7.2f} MB/s"
        )

    response = scanner_for(specs, "response")
    sample = clean[: 256 << 10]
    guard = StreamGuard(response)
    started = time.perf_counter()
    for i in range(0, len(sample), 4):
        guard.feed(sample[i : i + 4])
    guard.flush()
    seconds = time.perf_counter() - started
    print(f"\nstream window     {len(sample) / 1e3:6.0f} kB in 4-char deltas  {len(sample) / 4 / seconds:10.0f} deltas/s")

    evil = "a" * 25 + "!"
    started = time.perf_counter()
    assert re.search(r"(a+)+$", evil) is None
    python_seconds = time.perf_counter() - started
    hostile = Scanner([PatternSpec(name="evil", category="EVIL", expression=r"(a+)+$")])
    started = time.perf_counter()
    assert hostile.scan(evil).hits == []
    re2_seconds = time.perf_counter() - started
    big = "a" * 1_000_000 + "!"
    started = time.perf_counter()
    assert hostile.scan(big).hits == []
    big_seconds = time.perf_counter() - started
    print(
        f"(a+)+$ on 25 a's + '!': Python re {python_seconds:.2f} s, RE2 {re2_seconds * 1e6:.0f} µs; "
        f"RE2 on 1 MB of a's + '!': {big_seconds * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
