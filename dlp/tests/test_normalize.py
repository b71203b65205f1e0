"""The scan view: what evasions it undoes, and that offsets map back to the original."""

from __future__ import annotations

import pytest

from dlp.normalize import Normalized, normalize


def test_it_returns_plain_ascii_unchanged_without_a_map() -> None:
    view = normalize("card 4111 1111 1111 1111\tok\n")
    assert view.text == "card 4111 1111 1111 1111\tok\n"
    assert view.is_identity
    assert view.to_original(5, 24) == (5, 24)


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("４１１１－１１１１", "4111-1111"),  # fullwidth digits and hyphen (NFKC)
        ("٤١١١ ١١١١", "4111 1111"),  # Arabic-Indic digits (decimal folding)
        ("४१११", "4111"),  # Devanagari digits
        ("𝟒𝟏𝟏𝟏", "4111"),  # mathematical bold digits (NFKC)
        ("4\u200b1\u200c1\u200d1\u2060", "4111"),  # zero-width space/joiners, word joiner
        ("41\u00ad11", "4111"),  # soft hyphen
        ("4\U000e00311\U000e007f11", "4111"),  # Unicode tag characters
        ("4\ufe0f1\u03321\u20e31", "4111"),  # variation selector, combining marks
        ("4111\u20131111\u20141111", "4111-1111-1111"),  # en and em dashes
        ("4111\u00a01111\u20091111", "4111 1111 1111"),  # no-break and thin spaces
        ("4111\x001111\x7f", "41111111"),  # control characters
        ("\u0410KI\u0410", "AKIA"),  # Cyrillic А
        ("\u0391\u039a\u0399\u0391", "AKIA"),  # Greek capitals
        ("ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ", "john@example.com"),  # fullwidth e-mail
        ("①②③", "123"),  # circled digits (NFKC)
    ],
)
def test_it_undoes_evasions(original: str, expected: str) -> None:
    assert normalize(original).text == expected


def test_it_keeps_ordinary_non_latin_text() -> None:
    assert normalize("Grüße aus Köln — 東京").text == "Grüße aus Köln - 東京"


def test_it_maps_a_view_span_back_over_stripped_characters() -> None:
    original = "pay ４\u200b１\u200b１\u200b１ now"
    view = normalize(original)
    start = view.text.index("4111")
    s, e = view.to_original(start, start + 4)
    assert original[s:e] == "４\u200b１\u200b１\u200b１"
    assert original[:s] == "pay " and original[e:] == " now"


def test_it_maps_expansions_to_their_single_source_character() -> None:
    original = "a⑴b"  # NFKC: "(1)"
    view = normalize(original)
    assert view.text == "a(1)b"
    assert view.to_original(1, 4) == (1, 2)
    assert view.to_original(2, 3) == (1, 2)  # the digit inside the expansion


def test_it_drops_lone_surrogates_so_the_view_can_be_encoded() -> None:
    view = normalize("41\ud80011")
    assert view.text == "4111"
    view.text.encode("utf-8")


def test_original_index_of_the_end_is_the_original_length() -> None:
    view = normalize("ab\u200b")
    assert isinstance(view, Normalized)
    assert view.original_index(len(view.text)) == 3
