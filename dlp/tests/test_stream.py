"""The streaming window: nothing of a match is ever sent, whatever the chunking."""

from __future__ import annotations

import random

import pytest

from dlp.builtin import BUILTIN_PATTERNS
from dlp.engine import Action, PatternSpec, Scanner, scanner_for
from dlp.stream import DEFAULT_WINDOW, StreamGuard, StreamGuards

AWS = "AKIAZ7Q4MB2KXN5PLR3W"
CARD = "4111 1111 1111 1111"
GHP = "ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5"
PEM_HEADER = "-----BEGIN OPENSSH PRIVATE KEY-----"


@pytest.fixture(scope="module")
def response_scanner() -> Scanner:
    return scanner_for(BUILTIN_PATTERNS, "response")


def run(scanner: Scanner, chunks: list[str], **kwargs: object) -> tuple[str, bool, StreamGuard]:
    """Feed the chunks; return what was sent, whether the stream was stopped, the guard."""
    guard = StreamGuard(scanner, **kwargs)  # type: ignore[arg-type]  # test fixtures pass loose keyword bundles
    sent: list[str] = []
    for chunk in chunks:
        step = guard.feed(chunk)
        sent.append(step.text)
        if step.blocked:
            return "".join(sent), True, guard
    step = guard.flush()
    sent.append(step.text)
    return "".join(sent), step.blocked, guard


def splits(text: str) -> list[list[str]]:
    """The text cut in two at every position, and one character at a time."""
    return [[text[:i], text[i:]] for i in range(len(text) + 1)] + [list(text)]


def leaked(sent: str, secret: str, minimum: int = 4) -> bool:
    """Whether any `minimum`-character piece of the secret appears in what was sent."""
    return any(secret[i : i + minimum] in sent for i in range(len(secret) - minimum + 1))


@pytest.mark.parametrize("secret", [AWS, GHP, PEM_HEADER])
def test_a_blocked_secret_split_anywhere_is_stopped_before_any_of_it_is_sent(response_scanner: Scanner, secret: str) -> None:
    text = f"Here you go: {secret} and more text after it."
    for chunks in splits(text):
        sent, blocked, guard = run(response_scanner, chunks)
        assert blocked, chunks
        # On a block the buffer is dropped, so how much of the lead-in got out depends on the
        # chunking; none of the secret ever does.
        assert "Here you go: ".startswith(sent), chunks
        assert not leaked(sent, secret)
        assert guard.findings()[0].action == Action.BLOCK


def test_a_redacted_card_split_anywhere_is_rewritten_whole(response_scanner: Scanner) -> None:
    text = f"The card on file is {CARD}, expiring soon."
    for chunks in splits(text):
        sent, blocked, _ = run(response_scanner, chunks)
        assert not blocked
        assert sent == "The card on file is [REDACTED:CREDIT_CARD], expiring soon.", chunks


def test_an_evasive_secret_split_anywhere_is_still_caught(response_scanner: Scanner) -> None:
    text = "card ４\u200b１\u200b１\u200b１ 1111 1111 1111 end"
    for chunks in splits(text):
        sent, _, _ = run(response_scanner, chunks)
        assert sent == "card [REDACTED:CREDIT_CARD] end", chunks


def test_streamed_output_equals_the_non_streamed_scan_for_random_chunkings(response_scanner: Scanner) -> None:
    rng = random.Random(7)
    text = (
        "Dear Jane (jane.doe@example.com), your SSN 536-90-4399 and card 5555 5555 5555 4444 are on file. "
        "Call +44 20 7946 0958. Born on 12 March 1985. Thanks! " * 3
    )
    expected = response_scanner.scan(text).redacted()
    for _ in range(60):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 40)))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        sent, blocked, _ = run(response_scanner, chunks)
        assert not blocked
        assert sent == expected


def test_clean_text_passes_through_unchanged_and_is_held_back_only_briefly(response_scanner: Scanner) -> None:
    words = ["The", "quarterly", "report", "shows", "revenue", "grew", "in", "every", "region,", "led", "by", "Europe."]
    guard = StreamGuard(response_scanner)
    sent = []
    for word in words:
        sent.append(guard.feed(word + " ").text)
        # Ordinary prose: the hold-back is the tail of the last word or two, not the window.
        assert guard.held <= 24
    sent.append(guard.flush().text)
    assert "".join(sent) == " ".join(words) + " "


def test_counts_each_finding_once_however_long_it_is_held(response_scanner: Scanner) -> None:
    text = f"a {CARD} b {CARD} c jane@example.com d"
    _, _, guard = run(response_scanner, list(text))
    counts = {f.pattern: f.count for f in guard.findings()}
    assert counts == {"credit_card": 2, "email": 1}


def test_after_a_block_nothing_more_is_released(response_scanner: Scanner) -> None:
    guard = StreamGuard(response_scanner)
    assert guard.feed(f"key {AWS} ").blocked
    later = guard.feed("harmless text")
    assert later.blocked and later.text == ""
    assert guard.flush().blocked


def test_the_hold_back_never_exceeds_the_window() -> None:
    # A pattern whose prefixes cannot be derived holds everything it may: up to the window.
    scanner = Scanner([PatternSpec(name="odd", category="O", expression=r"q[^\p{Greek}]{3}")], decode_base64=False)
    assert scanner.holds_everything
    guard = StreamGuard(scanner, window=64)
    sent = "".join(guard.feed("x" * 10).text for _ in range(20))
    assert guard.held == 64
    assert sent == "x" * 136


def test_a_redact_match_that_outgrows_the_window_stops_the_stream() -> None:
    scanner = Scanner([PatternSpec(name="long", category="LONG", expression=r"tok-[a-z]{4,}", action="redact")])
    guard = StreamGuard(scanner, window=32)
    assert not guard.feed("start tok-").blocked
    step = guard.feed("abcdefghij" * 4)
    assert step.blocked and step.categories == ("LONG",)
    assert "abcd" not in step.text


def test_default_window_is_documented_size() -> None:
    assert DEFAULT_WINDOW == 1024


def test_guards_keep_choices_and_tool_calls_apart(response_scanner: Scanner) -> None:
    guards = StreamGuards(response_scanner)
    # The first half of a card in choice 0 and the second half in a tool call's arguments
    # are two different texts: neither is a card.
    a = guards.feed(("choice", 0), "card 4111 1111 ").text
    b = guards.feed(("tool", 0, 0), "1111 1111 end").text
    rest = guards.flush()
    assert a + rest[("choice", 0)].text == "card 4111 1111 "
    assert b + rest[("tool", 0, 0)].text == "1111 1111 end"
    # A card split across deltas of the same choice is caught.
    sent = guards.feed(("choice", 1), "card 4111 1111 ").text
    sent += guards.feed(("choice", 1), "1111 1111 end").text
    sent += guards.flush()[("choice", 1)].text
    assert sent == "card [REDACTED:CREDIT_CARD] end"
    assert not guards.blocked


def test_an_alert_pattern_with_a_unicode_class_holds_a_few_characters_not_the_stream() -> None:
    # Issue 13: `\p{Lu}\d{5}zz` (alert only) held back a whole stream until its end.
    scanner = Scanner([PatternSpec(name="ref", category="REF", expression=r"\p{Lu}\d{5}zz", action="alert")], decode_base64=False)
    assert not scanner.holds_everything
    guard = StreamGuard(scanner)
    words = ["Ticket ", "Ä12345zz ", "was ", "closed ", "by ", "the ", "support ", "team ", "today"]
    sent = "".join(guard.feed(word).text for word in words)
    assert guard.held <= 8 and sent == "".join(words)[: len(sent)] and len(sent) > 40
    assert [(f.category, f.count) for f in guard.findings()] == [("REF", 1)]
