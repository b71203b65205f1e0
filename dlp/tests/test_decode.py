"""What the model would decode is scanned too: escapes, entities, wrapped and nested encodings,
odd separators, look-alikes; both directions, whole and streamed; clean text left alone."""

from __future__ import annotations

import base64
import json
import random

import pytest

from dlp import decode
from dlp.builtin import BUILTIN_PATTERNS
from dlp.engine import Scanner, scanner_for
from dlp.inspection import Inspector
from dlp.stream import StreamGuard

AWS = "AKIAZ7Q4MB2KXN5PLR3W"
CARD = "4111 1111 1111 1111"
GHP = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# (name, encoded text, category): each is missed by the raw scan.
ENCODED = [
    ("json \\u escapes", '{"card": "' + "".join(f"\\u{ord(c):04x}" for c in CARD) + '"}', "CREDIT_CARD"),
    ("percent-encoding", "q=" + "".join(f"%{b:02X}" for b in CARD.encode()), "CREDIT_CARD"),
    ("html decimal entities", "card " + "".join(f"&#{ord(c)};" for c in CARD), "CREDIT_CARD"),
    ("html hex entities", "card " + "".join(f"&#x{ord(c):x};" for c in CARD), "CREDIT_CARD"),
    ("comma groups", "card 4111,1111,1111,1111 ok", "CREDIT_CARD"),
    ("pipe groups", "card 4111|1111|1111|1111 ok", "CREDIT_CARD"),
    ("plus groups", "card 4111+1111+1111+1111 ok", "CREDIT_CARD"),
    ("colon groups", "card 4111:1111:1111:1111 ok", "CREDIT_CARD"),
    ("parenthesised groups", "card (4111)(1111)(1111)(1111) ok", "CREDIT_CARD"),
    ("double-dash groups", "card 4111 -- 1111 -- 1111 -- 1111 ok", "CREDIT_CARD"),
    ("letter O for zero", "card 5500 OOOO OOOO 0004 ok", "CREDIT_CARD"),
    ("double base64", "blob " + b64(b64(f"key {AWS}")), "AWS_CREDENTIAL"),
    ("wrapped base64", "blob\n" + "\n".join(b64(f"the key is {AWS} ok")[i : i + 16] for i in range(0, 48, 16)), "AWS_CREDENTIAL"),
    ("hex", f"blob {f'key {AWS}'.encode().hex()}", "AWS_CREDENTIAL"),
    ("spaced hex", "blob " + " ".join(f"{b:02x}" for b in f"k {AWS}".encode()), "AWS_CREDENTIAL"),
    ("base64 of hex", "blob " + b64(f"key {AWS}".encode().hex()), "AWS_CREDENTIAL"),
    ("separators in a key", "key AKIA-Z7Q4-MB2K-XN5P-LR3W ok", "AWS_CREDENTIAL"),
    ("Cherokee look-alikes", "key " + AWS.replace("A", "Ꭺ").replace("K", "Ꮶ"), "AWS_CREDENTIAL"),
    ("Lisu look-alikes", "key " + AWS.replace("A", "ꓮ").replace("M", "ꓟ"), "AWS_CREDENTIAL"),
    ("small capitals", "key " + AWS.replace("A", "ᴀ").replace("K", "ᴋ"), "AWS_CREDENTIAL"),
    ("Greek look-alikes", "tok " + GHP.replace("a", "α").replace("p", "ρ"), "GITHUB_TOKEN"),
    ("Armenian look-alikes", "tok " + GHP.replace("h", "հ").replace("n", "ո"), "GITHUB_TOKEN"),
    ("%5F in a token", "tok " + GHP.replace("_", "%5F"), "GITHUB_TOKEN"),
    ("e-mail [at] [dot]", "write to jane.doe [at] example [dot] com today", "EMAIL"),
    ("e-mail (at) (dot)", "write to jane.doe (at) example (dot) com today", "EMAIL"),
]
IDS = [name for name, _, _ in ENCODED]


@pytest.fixture(scope="module")
def prompt() -> Scanner:
    return scanner_for(BUILTIN_PATTERNS, "prompt")


@pytest.fixture(scope="module")
def inspector() -> Inspector:
    return Inspector(scanner_for(BUILTIN_PATTERNS, "prompt"), scanner_for(BUILTIN_PATTERNS, "response"), {})


@pytest.mark.parametrize(("name", "text", "category"), ENCODED, ids=IDS)
def test_the_decoded_view_finds_what_the_raw_scan_misses(prompt: Scanner, name: str, text: str, category: str) -> None:
    raw = [h.category for h in prompt.scan(text).hits]
    if "look-alikes" in name or "capitals" in name:
        assert category in raw  # folded by normalize (confusables.py): no decoding needed
    else:
        assert category not in raw
    assert category in [h.category for h in decode.scan(prompt, text).hits]


@pytest.mark.parametrize(("name", "text", "category"), ENCODED, ids=IDS)
def test_a_prompt_field_with_an_encoded_value_is_caught(inspector: Inspector, name: str, text: str, category: str) -> None:
    arguments = json.dumps({"note": text})
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": text},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}],
            },
        ],
        "metadata": {"note": text},
    }
    rewritten, verdict = inspector.request(body)
    assert category in [f.category for f in verdict.findings]
    if category in verdict.blocked:
        return
    dumped = json.dumps(rewritten)
    assert f"[REDACTED:{category}]" in dumped or category == "EMAIL"  # e-mail: alert only


@pytest.mark.parametrize(("name", "text", "category"), ENCODED, ids=IDS)
@pytest.mark.parametrize("size", [1, 7, 13])
def test_a_streamed_encoded_value_is_caught_in_any_chunking(name: str, text: str, category: str, size: int) -> None:
    scanner = scanner_for(BUILTIN_PATTERNS, "response")
    full = f"Here: {text} done."
    guard = StreamGuard(scanner)
    sent: list[str] = []
    for i in range(0, len(full), size):
        step = guard.feed(full[i : i + size])
        sent.append(step.text)
        if step.blocked:
            break
    else:
        sent.append(guard.flush().text)
    assert category in [f.category for f in guard.findings()]
    whole = decode.scan(scanner, full)
    if whole.blocked:
        assert guard.blocked
    else:
        assert "".join(sent) == whole.redacted()  # streamed exactly as the whole answer is


def test_redaction_replaces_exactly_the_escapes_of_the_value(prompt: Scanner) -> None:
    encoded = "".join(f"%{b:02X}" for b in CARD.encode())
    assert decode.scan(prompt, f"a=1&card={encoded}&b=2").redacted() == "a=1&card=[REDACTED:CREDIT_CARD]&b=2"
    escaped = "".join(f"\\u{ord(c):04x}" for c in CARD)
    assert decode.scan(prompt, f'{{"x": "{escaped}", "y": 1}}').redacted() == '{"x": "[REDACTED:CREDIT_CARD]", "y": 1}'


def test_an_encoded_run_is_redacted_whole(prompt: Scanner) -> None:
    run = b64(b64(f"card {CARD}"))
    assert decode.scan(prompt, f"see {run} here").redacted() == "see [REDACTED:CREDIT_CARD] here"


def test_decoding_is_bounded_in_depth() -> None:
    text = f"key {AWS}"
    for _ in range(decode.MAX_DEPTH + 2):
        text = b64(text)
    assert decode.views(text)  # the outer layers are decoded,
    assert AWS not in " ".join(v.text for v in decode.views(text))  # but not all the way down


@pytest.mark.parametrize(
    ("first", "second"), [("my card is 4111 1111", " 1111 1111 thanks"), (f"key {AWS[:9]}", f"{AWS[9:]} ok")]
)
def test_a_value_split_over_two_messages_or_two_parts_is_caught(inspector: Inspector, first: str, second: str) -> None:
    for messages in (
        [{"role": "user", "content": first}, {"role": "user", "content": second}],
        [{"role": "user", "content": [{"type": "text", "text": first}, {"type": "text", "text": second}]}],
    ):
        original = json.dumps(messages)
        rewritten, verdict = inspector.request({"model": "m", "messages": messages})
        assert verdict.findings, messages
        dumped = json.dumps(rewritten)
        assert "1111 1111 thanks" not in dumped and AWS[9:] not in dumped
        assert json.dumps(messages) == original  # the client's body is not modified


# ── clean business text: nothing found, nothing changed ──

_WORDS = [
    "the",
    "quarterly",
    "claims",
    "report",
    "shows",
    "steady",
    "growth",
    "across",
    "regions",
    "while",
    "costs",
    "stayed",
    "within",
    "budget",
    "and",
    "the",
    "team",
    "plans",
    "to",
    "review",
    "supplier",
    "contracts",
    "before",
    "the",
    "audit",
    "next",
    "month",
    "with",
    "legal",
    "and",
    "finance",
]


def _clean_document(r: random.Random) -> str:
    pieces = []
    for _ in range(r.randint(3, 8)):
        words = " ".join(r.choice(_WORDS) for _ in range(r.randint(6, 14)))
        extra = r.choice(
            [
                f"{r.randint(1, 99)}% of {r.randint(100, 99999):,} units",
                f"on {r.randint(1, 28)}/{r.randint(1, 12)}/2024 at {r.randint(0, 23)}:{r.randint(0, 59):02d}",
                f"invoice INV-{r.randint(1000, 9999)} for ${r.randint(10, 9999)}.{r.randint(0, 99):02d}",
                f"version {r.randint(1, 9)}.{r.randint(0, 20)}.{r.randint(0, 50)}",
                f"https://example.com/search?q=claims%20report&page={r.randint(1, 9)}",
                "R&amp;D and Q&amp;A &lt;draft&gt;",
                f'{{"region": "EMEA", "count": {r.randint(1, 500)}, "note": "line one\\nline two"}}',
                f"scores {', '.join(str(r.randint(1, 99)) for _ in range(r.randint(3, 8)))}",
                f"room {r.randint(1, 9)}+{r.randint(1, 9)} (floor {r.randint(1, 30)})",
                f"commit {r.getrandbits(160):040x}",
                f"ticket ID {r.choice('ABCDEFGH')}{r.randint(10, 99)}-{r.randint(100, 999)}",
                "meet at noon, then dot the i's",
                f"ratio {r.randint(1, 9)}:{r.randint(1, 9)} | total {r.randint(10, 99)} | 2O24 plan",
            ]
        )
        pieces.append(f"{words.capitalize()} {extra}.")
    return " ".join(pieces)


def test_clean_business_text_has_under_one_percent_false_positives(inspector: Inspector) -> None:
    r = random.Random(13)
    documents = [_clean_document(r) for _ in range(1000)]
    changed = 0
    for document in documents:
        body = {"model": "m", "messages": [{"role": "user", "content": document}]}
        rewritten, verdict = inspector.request(body)
        if rewritten is not body or any(f.action != "alert" or f.category != "IP_ADDRESS" for f in verdict.findings):
            changed += 1
    assert changed / len(documents) <= 0.01, changed
