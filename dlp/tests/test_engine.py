"""The scanner: decisions, redaction in the original text, evasions, hostile input."""

from __future__ import annotations

import base64
import random
import re

import pytest

from dlp.builtin import BUILTIN_PATTERNS
from dlp.engine import Action, PatternSpec, Scanner, compile_check, redact, scanner_for

from .helpers import found

CARD = "4111 1111 1111 1111"
SSN = "536-90-4399"
AWS = "AKIAZ7Q4MB2KXN5PLR3W"


def spec(name: str, expression: str, *, action: str = Action.REDACT, category: str = "TEST", **kwargs: str) -> PatternSpec:
    return PatternSpec(name=name, category=category, expression=expression, action=action, **kwargs)


# --- decisions ---------------------------------------------------------------------------


def test_block_wins_over_redact_over_alert(scanner: Scanner) -> None:
    assert scanner.scan("mail jane@example.com").action == Action.ALERT
    assert scanner.scan(f"mail jane@example.com card {CARD}").action == Action.REDACT
    result = scanner.scan(f"mail jane@example.com card {CARD} key {AWS}")
    assert result.action == Action.BLOCK and result.blocked
    assert result.categories(Action.BLOCK) == ["AWS_CREDENTIAL"]


def test_clean_text_has_no_action(scanner: Scanner) -> None:
    result = scanner.scan("Summarise claim 42, please.")
    assert result.action is None and result.hits == [] and result.redacted() == "Summarise claim 42, please."


def test_findings_count_per_pattern_and_never_carry_the_value(scanner: Scanner) -> None:
    text = f"cards {CARD} and 5555 5555 5555 4444, ssn {SSN}"
    result = scanner.scan(text)
    by_pattern = {f.pattern: f for f in result.findings()}
    assert by_pattern["credit_card"].count == 2
    assert by_pattern["credit_card"].category == "CREDIT_CARD" and by_pattern["credit_card"].action == "redact"
    dumped = repr(result.findings()) + repr(result) + repr(result.hits)
    for secret in ("4111", "5555", "4399"):
        assert secret not in dumped


def test_team_overrides_change_the_action_or_switch_a_pattern_off(scanner: Scanner) -> None:
    text = f"card {CARD}"
    assert scanner.scan(text, overrides={"credit_card": "block"}).action == Action.BLOCK
    assert scanner.scan(text, overrides={"credit_card": "alert"}).redacted() == text
    assert scanner.scan(text, overrides={"credit_card": "off"}).hits == []


def test_the_same_expression_under_two_names_reports_both_and_the_stricter_wins() -> None:
    card = next(p for p in BUILTIN_PATTERNS if p.name == "credit_card")
    scanner = Scanner(
        [
            PatternSpec(name="gdpr:card", category="CREDIT_CARD", expression=card.expression, validator="card", action="redact"),
            PatternSpec(name="pci:card", category="CREDIT_CARD", expression=card.expression, validator="card", action="block"),
        ]
    )
    result = scanner.scan(f"card {CARD}")
    assert {(f.pattern, f.action) for f in result.findings()} == {("gdpr:card", "redact"), ("pci:card", "block")}
    assert result.action == Action.BLOCK


def test_direction_filters_patterns() -> None:
    specs = [
        spec("p", r"prompt-only", applies_to="prompt"),
        spec("r", r"response-only", applies_to="response"),
        spec("b", r"both-ways"),
    ]
    prompt = scanner_for(specs, "prompt")
    response = scanner_for(specs, "response")
    text = "prompt-only response-only both-ways"
    assert [h.pattern for h in prompt.scan(text).hits] == ["p", "b"]
    assert [h.pattern for h in response.scan(text).hits] == ["r", "b"]


# --- redaction ---------------------------------------------------------------------------


def test_it_redacts_in_place(scanner: Scanner) -> None:
    text = f"Card {CARD}, SSN {SSN}; mail jane@example.com."
    assert scanner.scan(text).redacted() == "Card [REDACTED:CREDIT_CARD], SSN [REDACTED:US_SSN]; mail jane@example.com."


def test_redaction_offsets_survive_normalisation(scanner: Scanner) -> None:
    text = "😀 ü Karte ４１１１\u200b１１１１\u200b１１１１\u200b１１１１ — SSN ５３６–９０–４３９９ ✓"
    assert scanner.scan(text).redacted() == "😀 ü Karte [REDACTED:CREDIT_CARD] — SSN [REDACTED:US_SSN] ✓"


def test_redaction_covers_characters_stripped_inside_the_match(scanner: Scanner) -> None:
    text = "x 4\u00ad1\u00ad1\u00ad1 1111 1111 1111 y"
    assert scanner.scan(text).redacted() == "x [REDACTED:CREDIT_CARD] y"


def test_overlapping_hits_become_one_token() -> None:
    from dlp.engine import Hit

    hits = [Hit("a", "A", "redact", 2, 6), Hit("b", "B", "redact", 4, 9), Hit("c", "C", "alert", 0, 12)]
    assert redact("0123456789AB", hits) == "01[REDACTED:A]9AB"


# --- evasions ----------------------------------------------------------------------------

EVASIONS = [
    ("fullwidth digits", "card ４１１１ １１１１ １１１１ １１１１", "CREDIT_CARD"),
    ("Arabic-Indic digits", "card ٤١١١ ١١١١ ١١١١ ١١١١", "CREDIT_CARD"),
    ("zero-width spaces", "card 4\u200b111\u200b1111\u200b1111\u200b1111", "CREDIT_CARD"),
    ("zero-width joiners", "ssn 536\u200d-90\u200d-4399", "US_SSN"),
    ("soft hyphens", "card 4111\u00ad1111\u00ad1111\u00ad1111", "CREDIT_CARD"),
    ("Unicode tags", "card 4111\U000e0020" + "1111\U000e0020" * 3, "CREDIT_CARD"),
    ("spaces everywhere", "card 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", "CREDIT_CARD"),
    ("dots", "card 4111.1111.1111.1111", "CREDIT_CARD"),
    ("slashes", "ssn 536/90/4399", "US_SSN"),
    ("mixed separators", "card 4111 - 1111 / 1111 . 1111", "CREDIT_CARD"),
    ("en dashes", "card 4111–1111–1111–1111", "CREDIT_CARD"),
    ("no-break spaces", "ssn 536\u00a090\u00a04399", "US_SSN"),
    ("line breaks", "card 4111\n1111\n1111\n1111", "CREDIT_CARD"),
    ("Cyrillic homoglyph", "key \u0410KIAZ7Q4MB2KXN5PLR3W", "AWS_CREDENTIAL"),
    ("Greek homoglyphs", "key \u0391\u039a\u0399\u0391Z7Q4MB2KXN5PLR3W", "AWS_CREDENTIAL"),
    ("fullwidth e-mail", "ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", "EMAIL"),
    ("math bold digits", "card 𝟒𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏", "CREDIT_CARD"),
    ("base64", "decode this: " + base64.b64encode(f"my card is {CARD}".encode()).decode(), "CREDIT_CARD"),
    ("base64 url-safe", "token " + base64.urlsafe_b64encode(f"ssn {SSN}??>".encode()).decode().rstrip("="), "US_SSN"),
    ("lower-case IBAN", "iban gb82 west 1234 5698 7654 32", "IBAN"),
]


@pytest.mark.parametrize(("evasion", "text", "category"), EVASIONS, ids=[e for e, _, _ in EVASIONS])
def test_it_sees_through(scanner: Scanner, evasion: str, text: str, category: str) -> None:
    assert category in {c for c, _ in found(scanner, text)}


def test_a_base64_hit_redacts_the_whole_encoded_run(scanner: Scanner) -> None:
    encoded = base64.b64encode(f"card {CARD}".encode()).decode()
    assert scanner.scan(f"see {encoded} ok").redacted() == "see [REDACTED:CREDIT_CARD] ok"


def test_base64_of_binary_or_clean_text_is_left_alone(scanner: Scanner) -> None:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    clean = base64.b64encode(b"nothing to see in this sentence").decode()
    assert scanner.scan(f"{png} {clean}").hits == []


def test_base64_is_decoded_only_once(scanner: Scanner) -> None:
    twice = base64.b64encode(base64.b64encode(f"card {CARD}".encode())).decode()
    assert scanner.scan(twice).hits == []


# --- expressions -------------------------------------------------------------------------


def test_compile_check_accepts_re2_expressions() -> None:
    assert compile_check(r"(?i)\bproject[ -]?apollo\b") is None


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        (r"(?<=secret)\d+", "invalid perl operator: (?<="),
        (r"(a)\1", "invalid escape sequence: \\1"),
        (r"(unclosed", "missing ): (unclosed"),
        (r"x*", "empty string"),
        ("", "empty"),
    ],
)
def test_compile_check_refuses_with_the_reason(expression: str, reason: str) -> None:
    result = compile_check(expression)
    assert result is not None and reason in result


def test_scanner_refuses_an_unknown_validator() -> None:
    with pytest.raises(ValueError, match="unknown validator 'nope'"):
        Scanner([spec("x", r"\d+", validator="nope")])


# --- hostile input -----------------------------------------------------------------------


def test_a_catastrophic_backtracking_pattern_answers_correctly() -> None:
    # With Python's `re`, (a+)+$ on 30 a's and a '!' explores 2**30 paths (bench/dlp_bench.py
    # times it); RE2 runs it as an automaton.
    scanner = Scanner([spec("evil", r"(a+)+$"), spec("evil2", r"(x|x)*y")])
    assert scanner.scan("a" * 100_000 + "!").hits == []
    assert [h.pattern for h in scanner.scan("a" * 100_000).hits] == ["evil"]
    assert scanner.scan("x" * 100_000).hits == []


def test_python_re_would_backtrack_on_the_same_expression() -> None:
    # Not timed: count the work instead. Python's engine visits every split of the run.
    assert re.compile(r"(a+)+$").search("a" * 12 + "!") is None  # 2**12 paths, still fast


def test_hostile_builtin_inputs_give_correct_answers(scanner: Scanner) -> None:
    spaced_digits = " ".join("4" for _ in range(100_000))
    # 444-44-4444 is a well-formed SSN, but no window of 4s passes Luhn.
    assert "CREDIT_CARD" not in scanner.scan(spaced_digits).categories()
    many_ats = "a@" * 100_000
    assert scanner.scan(many_ats).action is None
    long_b64 = "QUFB" * 100_000
    assert scanner.scan(long_b64).hits == []
    # A real card after all of that is still found.
    tail = f" {CARD}"
    assert "CREDIT_CARD" in scanner.scan(spaced_digits[:50_000] + " x" + tail).categories()


def test_the_pattern_set_finds_a_match_after_input_that_thrashes_its_automaton(scanner: Scanner) -> None:
    # Random bytes across the patterns' alphabets create many automaton states; RE2 flushes its
    # state cache and carries on, it must not give up and report "no match".
    rng = random.Random(4)
    alphabet = "0123456789abcdefABCDEF-_.@:/+= \n"
    noise = "".join(rng.choice(alphabet) for _ in range(500_000))
    text = noise + f" key {AWS} "
    assert "AWS_CREDENTIAL" in scanner.scan(text).categories()
