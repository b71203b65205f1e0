"""Prefix expressions: every prefix of every match is accepted, nothing gets refused silently."""

from __future__ import annotations

import pytest
import re2

from dlp.builtin import BUILTIN_PATTERNS
from dlp.prefix import prefix_expression, stream_hold_problem, widened_prefix_expression

from .test_builtin_patterns import TRUE_POSITIVE_IDS, TRUE_POSITIVES


def fullmatches(expression: str, text: str) -> bool:
    return re2.compile(expression).fullmatch(text) is not None


@pytest.mark.parametrize("pattern", BUILTIN_PATTERNS, ids=[p.name for p in BUILTIN_PATTERNS])
def test_every_builtin_pattern_has_a_prefix_expression(pattern) -> None:
    assert prefix_expression(pattern.expression) is not None


@pytest.mark.parametrize(("category", "text", "value"), TRUE_POSITIVES, ids=TRUE_POSITIVE_IDS)
def test_every_prefix_of_a_real_match_is_viable(category: str, text: str, value: str) -> None:
    # The whole match of whichever pattern finds `value`, then each of its prefixes.
    candidates = [p for p in BUILTIN_PATTERNS if p.category == category]
    for pattern in candidates:
        match = re2.compile(pattern.expression).search(text)
        if match is None:
            continue
        prefix = prefix_expression(pattern.expression)
        assert prefix is not None
        whole = match.group(0)
        for cut in range(len(whole) + 1):
            assert fullmatches(prefix, whole[:cut]), (pattern.name, cut)
        return
    pytest.fail(f"no {category} pattern matched")


@pytest.mark.parametrize(
    ("expression", "viable", "not_viable"),
    [
        (r"abc", ["", "a", "ab", "abc"], ["b", "abcd", "x"]),
        (r"(?i)AKIA[0-9A-Z]{4}", ["ak", "AKIA12", "akia1234"], ["AKIA12345", "KIA"]),
        (r"a(?-i:b)|cd", ["a", "ab", "c", "cd"], ["d", "aB"]),
        (r"x\d{2,3}y", ["x", "x1", "x12", "x123", "x12y", "x123y"], ["x1234", "xy1"]),
        (r"\bfoo\b", ["f", "fo", "foo"], ["oo"]),
        (r"a.c", ["a", "ab", "abc"], ["a\n"]),
        (r"(?s)a.c", ["a\n", "a\nc"], ["b"]),
        (r"[^0-9]+@", ["ab", "ab@"], ["1", "a1"]),
    ],
)
def test_prefix_language(expression: str, viable: list[str], not_viable: list[str]) -> None:
    prefix = prefix_expression(expression)
    assert prefix is not None
    for text in viable:
        assert fullmatches(prefix, text), text
    for text in not_viable:
        assert not fullmatches(prefix, text), text


@pytest.mark.parametrize(
    "expression",
    [r"\p{Greek}+", r"[[:digit:]]{4}", r"x{,3}", r"(?U)a+", r"\Qa.b\E", r"\x{41}", r"a\z"],
)
def test_it_refuses_syntax_it_could_misread(expression: str) -> None:
    assert prefix_expression(expression) is None


@pytest.mark.parametrize(
    ("expression", "match"),
    [(r"\p{Lu}\d{5}zz", "Ä12345zz"), (r"[[:alpha:]]{2}-\d+", "ab-42"), (r"\Qa.b\E\x{41}", "a.bA"), (r"[^\pL]x", None)],
)
def test_re2_only_syntax_gets_a_wider_prefix_expression_not_the_whole_window(expression: str, match: str | None) -> None:
    prefix = widened_prefix_expression(expression)
    if match is None:  # a Unicode class inside a negated class cannot be widened
        assert prefix is None and stream_hold_problem(expression) is not None
        return
    assert prefix is not None
    for cut in range(len(match) + 1):
        assert fullmatches(prefix, match[:cut]), cut
    assert not fullmatches(prefix, "plain words here and there")  # ordinary text is not held


@pytest.mark.parametrize("expression", [r".*secret", r"[A-Za-z ]+secret", r"\p{L}+\d", r"x{,3}"])
def test_an_expression_that_would_hold_ordinary_text_is_refused_with_the_reason(expression: str) -> None:
    reason = stream_hold_problem(expression)
    assert reason is not None and ("hold back" in reason or "{0,n}" in reason)


@pytest.mark.parametrize("pattern", BUILTIN_PATTERNS, ids=[p.name for p in BUILTIN_PATTERNS])
def test_every_builtin_pattern_passes_the_stream_hold_check(pattern) -> None:
    assert stream_hold_problem(pattern.expression) is None
