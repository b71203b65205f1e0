"""Validators: real numbers pass, look-alikes don't, and values are found inside longer runs."""

from __future__ import annotations

import pytest

from dlp import validators


def spans(name: str, value: str) -> list[str]:
    validator = validators.get(name)
    assert validator is not None
    return [value[s:e] for s, e in validator(value)]


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111111",  # Visa
        "4012888888881881",
        "5555555555554444",  # Mastercard
        "2223003122003222",  # Mastercard 2-series
        "378282246310005",  # Amex
        "6011111111111117",  # Discover
        "30569309025904",  # Diners (14)
        "3530111333300000",  # JCB
        "6200000000000005",  # UnionPay
    ],
)
def test_it_accepts_real_card_numbers(number: str) -> None:
    assert validators.card_number_ok(number)


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111112",  # Luhn fails
        "1234567812345670",  # Luhn passes, no issuer starts with 1
        "411111111111111",  # Visa is never 15 digits
        "3782822463100050",  # Amex is never 16 digits
    ],
)
def test_it_rejects_card_look_alikes(number: str) -> None:
    assert not validators.card_number_ok(number)


def test_it_finds_a_card_after_other_digits_in_the_same_run() -> None:
    assert spans("card", "12 4111 1111 1111 1111") == ["4111 1111 1111 1111"]
    assert spans("card", "4111 1111 1111 1111 22 5555 5555 5555 4444") == ["4111 1111 1111 1111", "5555 5555 5555 4444"]


def test_it_does_not_cut_a_card_out_of_one_long_unbroken_number() -> None:
    assert spans("card", "00004111111111111111") == []


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("GB82 WEST 1234 5698 7654 32", True),
        ("DE89370400440532013000", True),
        ("fr14 2004 1010 0505 0001 3m02 606", True),
        ("GB82 WEST 1234 5698 7654 33", False),  # mod-97 fails
        ("GB82 WEST 1234 5698 7654", False),  # too short for GB
    ],
)
def test_iban(value: str, found: bool) -> None:
    assert bool(spans("iban", value)) is found


def test_it_finds_an_iban_behind_a_look_alike_prefix_and_before_trailing_words() -> None:
    assert spans("iban", "XX12 GB82 WEST 1234 5698 7654 32 THANKS") == ["GB82 WEST 1234 5698 7654 32"]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("536-90-4399", True),
        ("000-12-3456", False),  # area 000
        ("666-12-3456", False),  # area 666
        ("912-12-3456", False),  # area 9xx
        ("536-00-4399", False),  # group 00
        ("536-90-0000", False),  # serial 0000
        ("078-05-1120", False),  # the Woolworth wallet card
    ],
)
def test_us_ssn(value: str, valid: bool) -> None:
    assert bool(spans("us_ssn", value)) is valid


def test_us_itin() -> None:
    assert spans("us_itin", "912-70-3456") == ["912-70-3456"]
    assert spans("us_itin", "912-93-4567") == []  # group 93 is not issued
    assert spans("us_itin", "536-90-4399") == []


@pytest.mark.parametrize(
    ("value", "valid"),
    [("AB123456C", True), ("ab 12 34 56 d", True), ("QQ123456C", False), ("BG123456A", False), ("AB123456E", False)],
)
def test_uk_nino(value: str, valid: bool) -> None:
    assert bool(spans("uk_nino", value)) is valid


def test_nhs_number() -> None:
    assert spans("nhs_number", "943 476 5919") == ["943 476 5919"]
    assert spans("nhs_number", "943 476 5918") == []


def test_aba_routing() -> None:
    assert spans("aba_routing", "011000015") == ["011000015"]
    assert spans("aba_routing", "011000016") == []


def test_passport_mrz_check_digits() -> None:
    specimen = "L898902C36UTO7408122F1204159ZE184226B<<<<<10"  # ICAO Doc 9303 specimen
    assert spans("mrz", specimen) == [specimen]
    assert spans("mrz", specimen.replace("L898902C36", "L898902C37")) == []


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("1985-03-12", True),
        ("12/03/1985", True),
        ("03/25/1985", True),  # US order
        ("12 March 1985", True),
        ("March 12th, 1985", True),
        ("31/02/1985", False),
        ("2999-01-01", False),
        ("1850-01-01", False),
    ],
)
def test_birth_date(value: str, valid: bool) -> None:
    assert bool(spans("birth_date", value)) is valid


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [
        ("ipv4", "192.168.1.20", True),
        ("ipv4", "999.1.1.1", False),
        ("ipv6", "2001:db8::8a2e:370:7334", True),
        ("ipv6", "dead::beef", False),
        ("ipv6", "::", False),
        ("bitcoin", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", True),
        ("bitcoin", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3", False),
        ("bitcoin", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", True),
        ("bitcoin", "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297", True),  # BIP-350
        ("bitcoin", "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3298", False),
        ("not_placeholder", "AKIA" + "X" * 16, False),
        ("not_placeholder", "AKIAZ7Q4MB2KXN5PLR3W", True),
        ("phone", "+44 20 7946 0958", True),
        ("phone", "+1 222", False),
    ],
)
def test_other_validators(name: str, value: str, valid: bool) -> None:
    assert bool(spans(name, value)) is valid


def test_jwt_needs_a_json_header_with_an_algorithm() -> None:
    token = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
        ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    )
    assert spans("jwt", token) == [token]
    assert spans("jwt", "eyJub3Rqc29u.eyJzdWIiOiIx.sig") == []


def test_the_card_validator_stays_linear_on_a_huge_run() -> None:
    run = " ".join("4" for _ in range(200_000))
    # Every window of 4s fails Luhn; the answer must come back (and be empty).
    assert spans("card", run) == []
