"""Every built-in category: true positives are found with the right span, look-alikes are not."""

from __future__ import annotations

import pytest

from dlp.builtin import BUILTIN_PATTERNS, CATEGORIES
from dlp.engine import Scanner

from .helpers import found

GHP = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM\n-----END RSA PRIVATE KEY-----"
RANDOM36 = "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5"
MRZ = "L898902C36UTO7408122F1204159ZE184226B<<<<<10"  # ICAO Doc 9303 specimen, line 2
SLACK = "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"

# (category, text, the exact substring that must be found)
TRUE_POSITIVES = [
    ("EMAIL", "write to jane.doe+dlp@mail.example.co.uk today", "jane.doe+dlp@mail.example.co.uk"),
    ("PHONE", "call +44 20 7946 0958 now", "+44 20 7946 0958"),
    ("PHONE", "or 0049 30 1234567.", "0049 30 1234567"),
    ("PHONE", "US office (415) 555-2671", "(415) 555-2671"),
    ("CREDIT_CARD", "visa 4111 1111 1111 1111.", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "mc 5555-5555-5555-4444", "5555-5555-5555-4444"),
    ("CREDIT_CARD", "amex 3782 822463 10005", "3782 822463 10005"),
    ("CREDIT_CARD", "discover 6011.1111.1111.1117", "6011.1111.1111.1117"),
    ("CREDIT_CARD", "jcb 3530/1113/3330/0000", "3530/1113/3330/0000"),
    ("CREDIT_CARD", "diners 30569309025904", "30569309025904"),
    ("CREDIT_CARD", "ID4111111111111111", "4111111111111111"),
    ("IBAN", "IBAN: GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN", "DE89370400440532013000", "DE89370400440532013000"),
    ("US_SSN", "SSN 536-90-4399", "536-90-4399"),
    ("US_SSN", "my social security number is 536904399", "536904399"),
    ("US_ITIN", "ITIN 912-70-3456", "912-70-3456"),
    ("UK_NINO", "NI number AB 12 34 56 C", "AB 12 34 56 C"),
    ("NHS_NUMBER", "NHS number: 943 476 5919", "943 476 5919"),
    ("PASSPORT", "Passport No: K1234567", "K1234567"),
    ("PASSPORT", f"P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n{MRZ}", MRZ),
    ("IP_ADDRESS", "host 192.168.10.20 is up", "192.168.10.20"),
    ("IP_ADDRESS", "v6 2001:db8::8a2e:370:7334 ok", "2001:db8::8a2e:370:7334"),
    ("DATE_OF_BIRTH", "DOB: 1985-03-12", "1985-03-12"),
    ("DATE_OF_BIRTH", "she was born on 12 March 1985", "12 March 1985"),
    ("DATE_OF_BIRTH", "Date of birth is 03/25/1985", "03/25/1985"),
    ("AWS_CREDENTIAL", "key AKIAZ7Q4MB2KXN5PLR3W", "AKIAZ7Q4MB2KXN5PLR3W"),
    (
        "AWS_CREDENTIAL",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    ("GCP_CREDENTIAL", "key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY&x", "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
    ("GCP_CREDENTIAL", '"private_key_id": "' + "3f" * 20 + '"', "3f" * 20),
    ("AZURE_CREDENTIAL", "AccountKey=" + RANDOM36 * 2 + RANDOM36[:14] + "==;", RANDOM36 * 2 + RANDOM36[:14] + "=="),
    ("AZURE_CREDENTIAL", "secret abc8Q~" + RANDOM36[:34] + " end", "abc8Q~" + RANDOM36[:34]),
    ("GITHUB_TOKEN", f"token {GHP}", GHP),
    ("SLACK_TOKEN", f"bot token {SLACK}", SLACK),
    ("OPENAI_KEY", "OPENAI_API_KEY=sk-proj-" + RANDOM36, "sk-proj-" + RANDOM36),
    ("ANTHROPIC_KEY", "sk-ant-api03-" + RANDOM36 * 2 + "AA", "sk-ant-api03-" + RANDOM36 * 2 + "AA"),
    ("STRIPE_KEY", "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("PRIVATE_KEY", f"here:\n{PEM}\nthanks", PEM),
    ("JWT", f"Authorization: Bearer {JWT}", JWT),
    ("ABA_ROUTING", "routing number 011000015", "011000015"),
    ("CRYPTO_WALLET", "send to 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2.", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
    ("CRYPTO_WALLET", "or bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
    ("CRYPTO_WALLET", "eth 0x52908400098527886E0F7030069857D2E4169EE7", "0x52908400098527886E0F7030069857D2E4169EE7"),
]

TRUE_POSITIVE_IDS = [f"{c}-{i}" for i, (c, _, _) in enumerate(TRUE_POSITIVES)]

LOOK_ALIKES = [
    ("CREDIT_CARD", "order 4111 1111 1111 1112"),  # fails Luhn
    ("CREDIT_CARD", "tracking 1234 5678 1234 5670"),  # Luhn-valid, no issuer
    ("CREDIT_CARD", "invoice 000041111111111111111"),  # part of a longer number
    ("IBAN", "GB82 WEST 1234 5698 7654 33"),  # mod-97 fails
    ("US_SSN", "SSN 078-05-1120"),  # published specimen
    ("US_SSN", "SSN 666-12-3456"),
    ("US_SSN", "zip 12345-6789"),  # zip+4 is not 3-2-4
    ("UK_NINO", "QQ 12 34 56 C"),  # HMRC's own example, never issued
    ("NHS_NUMBER", "NHS number 943 476 5918"),
    ("PASSPORT", "passport number: expired"),
    ("IP_ADDRESS", "version 999.1.1.1"),
    ("IP_ADDRESS", "std::vector<int> at 12:30:45, dead::beef"),
    ("DATE_OF_BIRTH", "DOB: 31/02/1985"),
    ("DATE_OF_BIRTH", "meeting on 12 March 1985"),  # a date without birth context
    ("AWS_CREDENTIAL", "AKIA" + "X" * 16),
    ("GITHUB_TOKEN", "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("OPENAI_KEY", "sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("JWT", "eyJub3Rqc29uIGF0IGFsbA.eyJzdWIiOiIxMjM0In0.sig"),
    ("ABA_ROUTING", "routing number 011000016"),
    ("CRYPTO_WALLET", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3"),
]


def test_every_category_has_a_true_positive_case() -> None:
    assert set(CATEGORIES) == {c for c, _, _ in TRUE_POSITIVES}


@pytest.mark.parametrize(("category", "text", "value"), TRUE_POSITIVES, ids=TRUE_POSITIVE_IDS)
def test_it_finds(scanner: Scanner, category: str, text: str, value: str) -> None:
    assert (category, value) in found(scanner, text)


@pytest.mark.parametrize(("category", "text"), LOOK_ALIKES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(LOOK_ALIKES)])
def test_it_ignores_look_alikes(scanner: Scanner, category: str, text: str) -> None:
    assert category not in {c for c, _ in found(scanner, text)}


def test_clean_prose_has_no_hits(scanner: Scanner) -> None:
    prose = (
        "Summarise claim 42 for the Tuesday meeting. The customer called twice about the delay; "
        "version 2.3.1 of the app crashed at 10:45. Total: $1,234.56 across 3 invoices (ref. A-1009)."
    )
    assert found(scanner, prose) == []


def test_every_builtin_pattern_has_a_unique_name() -> None:
    names = [p.name for p in BUILTIN_PATTERNS]
    assert len(names) == len(set(names))
