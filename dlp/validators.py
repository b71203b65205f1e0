"""Checks that run after a pattern matched, so look-alikes (a 16-digit order id, a version
string, an example key made of x's) are not treated as regulated data.

A validator takes the matched candidate (the pattern's `value` group, or the whole match) and
returns the spans inside it that are real, relative to the candidate. Most checks are
all-or-nothing; the digit-run checks look *inside* the candidate because patterns match whole
separator-tolerant runs: "ref 12 4111 1111 1111 1111" is one run of 18 digits that fails Luhn,
but the group-aligned window "4111 1111 1111 1111" is a card.

Checksums come from python-stdnum where it has them (Luhn, IBAN, SSN, ITIN, NHS, ABA routing,
Bitcoin). The few that stdnum lacks (UK NINO prefixes, ICAO MRZ check digits, Bech32m) are
written out here with a reference.

Every validator is linear in the candidate's length: a hostile 1 MB digit run must not turn
into a quadratic loop here.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterator

from stdnum import bitcoin, iban, luhn
from stdnum.de import idnr
from stdnum.es import dni as es_dni_module
from stdnum.es import nie
from stdnum.fr import nir
from stdnum.gb import nhs
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import itin, rtn, ssn

Span = tuple[int, int]
Validator = Callable[[str], list[Span]]

# Python `re` is safe here: every expression below is a plain character-class scan or a
# fixed-shape match with no nested quantifiers, run on candidates RE2 already bounded.
_DIGIT_GROUP = re.compile(r"[0-9]+")
_ALNUM = re.compile(r"[A-Za-z0-9]")
_NOT_DIGITS = re.compile(r"[^0-9]+")

_REGISTRY: dict[str, Validator] = {}


def register(name: str) -> Callable[[Validator], Validator]:
    def decorator(func: Validator) -> Validator:
        _REGISTRY[name] = func
        return func

    return decorator


def whole(check: Callable[[str], bool]) -> Validator:
    """Adapt a yes/no check on the whole candidate to the span interface."""

    def validate(value: str) -> list[Span]:
        return [(0, len(value))] if check(value) else []

    validate.__name__ = check.__name__
    validate.__doc__ = check.__doc__
    return validate


def get(name: str) -> Validator | None:
    return _REGISTRY.get(name)


def names() -> list[str]:
    return sorted(_REGISTRY)


def digits_of(value: str) -> str:
    return _NOT_DIGITS.sub("", value)


def _group_windows(value: str, *, min_digits: int, max_digits: int) -> Iterator[tuple[int, list[tuple[int, int, str]]]]:
    """For every digit group, the windows of consecutive groups starting there.

    Yields (start group index, [(start, end, digits), ...] for windows of growing length that
    hold between min_digits and max_digits digits). Bounded: a window never holds more than
    max_digits digits, so each start costs O(max_digits).
    """
    groups = [(m.start(), m.end()) for m in _DIGIT_GROUP.finditer(value)]
    for i, (start, _) in enumerate(groups):
        digits = ""
        windows = []
        for j in range(i, len(groups)):
            gs, ge = groups[j]
            digits += value[gs:ge]
            if len(digits) > max_digits:
                break
            if len(digits) >= min_digits:
                windows.append((start, ge, digits))
        yield i, windows


def _best_windows(value: str, *, min_digits: int, max_digits: int, check: Callable[[str], bool]) -> list[Span]:
    """Non-overlapping group-aligned windows that pass `check`, longest first at each start."""
    found: list[Span] = []
    taken_until = -1
    for _, windows in _group_windows(value, min_digits=min_digits, max_digits=max_digits):
        if not windows or windows[0][0] < taken_until:
            continue
        for start, end, digits in reversed(windows):
            if check(digits):
                found.append((start, end))
                taken_until = end
                break
    return found


# --- payment cards -------------------------------------------------------------------------

# (IIN prefix range low, high, number of prefix digits, allowed lengths). ISO/IEC 7812 ranges
# as published by the schemes; Maestro/UnionPay overlap others, which is fine: we only ask
# "is this some card", not which brand.
_CARD_RANGES: tuple[tuple[int, int, int, frozenset[int]], ...] = (
    (4, 4, 1, frozenset({13, 16, 19})),  # Visa
    (51, 55, 2, frozenset({16})),  # Mastercard
    (2221, 2720, 4, frozenset({16})),  # Mastercard 2-series
    (34, 34, 2, frozenset({15})),  # American Express
    (37, 37, 2, frozenset({15})),
    (300, 305, 3, frozenset({14, 16, 17, 18, 19})),  # Diners Club
    (36, 36, 2, frozenset({14, 16, 17, 18, 19})),
    (38, 39, 2, frozenset({14, 16, 17, 18, 19})),
    (6011, 6011, 4, frozenset({16, 17, 18, 19})),  # Discover
    (644, 649, 3, frozenset({16, 17, 18, 19})),
    (65, 65, 2, frozenset({16, 17, 18, 19})),
    (3528, 3589, 4, frozenset({16, 17, 18, 19})),  # JCB
    (62, 62, 2, frozenset({16, 17, 18, 19})),  # UnionPay
    (2200, 2204, 4, frozenset({16, 17, 18, 19})),  # Mir
    (50, 50, 2, frozenset(range(12, 20))),  # Maestro
    (56, 69, 2, frozenset(range(12, 20))),
    (60, 60, 2, frozenset({16})),  # RuPay
    (81, 82, 2, frozenset({16})),
    (9792, 9792, 4, frozenset({16})),  # Troy
)


@functools.cache
def _card_lengths(prefix: str) -> tuple[int, ...]:
    """Lengths some issuer uses for numbers starting with these (up to 4) digits, longest first."""
    lengths: set[int] = set()
    for low, high, width, allowed in _CARD_RANGES:
        if len(prefix) >= width and low <= int(prefix[:width]) <= high:
            lengths |= allowed
    return tuple(sorted(lengths, reverse=True))


def card_number_ok(digits: str) -> bool:
    """A known issuer range, a length that issuer uses, and a valid Luhn check digit."""
    return len(digits) in _card_lengths(digits[:4]) and luhn.is_valid(digits)


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # Luhn: 2d, minus 9 when that has two digits


@register("card")
def card(value: str) -> list[Span]:
    """Payment card numbers inside a separator-tolerant digit run (ISO/IEC 7812, Luhn).

    Windows start and end on digit-group boundaries. A hostile run of a million one-digit
    groups has a million window starts, so the Luhn sum of a window comes from prefix sums
    (O(1) per window) and stdnum's Luhn only confirms the windows that pass.
    """
    groups = [(m.start(), m.end()) for m in _DIGIT_GROUP.finditer(value)]
    digits = "".join(value[s:e] for s, e in groups)
    if len(digits) < 12:
        return []
    # Digit index -> position in `value`, for group starts and ends only.
    start_at: dict[int, int] = {}
    end_at: dict[int, int] = {}
    count = 0
    for s, e in groups:
        start_at[count] = s
        count += e - s
        end_at[count] = e
    # even[k]/odd[k]: Luhn sum of digits[:k] with the even/odd positions doubled.
    even = [0] * (len(digits) + 1)
    odd = [0] * (len(digits) + 1)
    for k, ch in enumerate(digits):
        d = ord(ch) - 48
        even[k + 1] = even[k] + (_DOUBLED[d] if k % 2 == 0 else d)
        odd[k + 1] = odd[k] + (d if k % 2 == 0 else _DOUBLED[d])

    found: list[Span] = []
    taken_until = 0
    for a in start_at:  # insertion order: ascending
        if a < taken_until:
            continue
        for length in _card_lengths(digits[a : a + 4]):
            b = a + length
            if b not in end_at:
                continue
            # The check digit (b-1) is never doubled; doubled positions have the other parity.
            prefix = odd if (b - 1) % 2 == 0 else even
            if (prefix[b] - prefix[a]) % 10 == 0 and luhn.is_valid(digits[a:b]):
                found.append((start_at[a], end_at[b]))
                taken_until = b
                break
    return found


# --- bank accounts ---------------------------------------------------------------------------


@functools.cache
def _iban_length(country: str) -> int | None:
    """The IBAN length registered for a country (ISO 13616 registry, via stdnum's copy)."""
    info = iban._ibandb.info(country)[0][1]
    structure = info.get("bban")
    if not structure:
        return None
    return 4 + sum(int(count) for count in re.findall(r"(\d+)!", structure))


@register("iban")
def iban_number(value: str) -> list[Span]:
    """IBANs: ISO 13616 mod-97 and the country's registered length and BBAN format (stdnum).

    The pattern runs greedily over any alphanumerics that follow ("DE89 3704 0044 0532 0130
    00 AND MORE"), and may start on a look-alike ("XX12 DE89..."), so every group start that
    reads letter-letter-digit-digit is tried with its country's length.
    """
    positions = [m.start() for m in _ALNUM.finditer(value)]
    compact = "".join(value[p] for p in positions).upper()
    group_starts = {0} | {i for i in range(1, len(positions)) if positions[i] != positions[i - 1] + 1}
    found: list[Span] = []
    taken_until = 0
    for i in sorted(group_starts):
        if i < taken_until:
            continue
        head = compact[i : i + 4]
        if len(head) < 4 or not (head[:2].isalpha() and head[2:].isdigit()):
            continue
        length = _iban_length(head[:2])
        if length is None or i + length > len(compact):
            continue
        if iban.is_valid(compact[i : i + length]):
            found.append((positions[i], positions[i + length - 1] + 1))
            taken_until = i + length
    return found


@register("aba_routing")
def aba_routing(value: str) -> list[Span]:
    """US ABA routing transit number: 9 digits, 3-7-1 weighted check digit (stdnum us.rtn)."""
    return _best_windows(value, min_digits=9, max_digits=9, check=rtn.is_valid)


# --- national identifiers ------------------------------------------------------------------


@register("us_ssn")
@whole
def us_ssn(value: str) -> bool:
    """US SSN: no 000/666/9xx area, no 00 group, no 0000 serial, not a known-published one."""
    digits = digits_of(value)
    return len(digits) == 9 and ssn.is_valid(digits)


@register("us_itin")
@whole
def us_itin(value: str) -> bool:
    """US ITIN: starts with 9, group in the IRS-issued 70-88, 90-92, 94-99 ranges."""
    digits = digits_of(value)
    return len(digits) == 9 and itin.is_valid(digits)


# HMRC National Insurance Manual NIM39110: these prefixes are never issued.
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
_NINO_FIRST = frozenset("ABCEGHJKLMNOPRSTWXYZ")  # not D, F, I, Q, U, V
_NINO_SECOND = frozenset("ABCEGHJKLMNPRSTWXYZ")  # and not O


@register("uk_nino")
@whole
def uk_nino(value: str) -> bool:
    """UK National Insurance number: allowed prefix letters, six digits, suffix A-D."""
    compact = "".join(ch for ch in value if ch.isalnum()).upper()
    if len(compact) not in (8, 9):
        return False
    prefix, digits, suffix = compact[:2], compact[2:8], compact[8:]
    return (
        prefix[0] in _NINO_FIRST
        and prefix[1] in _NINO_SECOND
        and prefix not in _NINO_BAD_PREFIXES
        and digits.isdigit()
        and suffix in ("", "A", "B", "C", "D")
    )


@register("nhs_number")
@whole
def nhs_number(value: str) -> bool:
    """NHS number (England, Wales, Isle of Man): 10 digits with a mod-11 check digit."""
    digits = digits_of(value)
    return len(digits) == 10 and nhs.is_valid(digits)


_MRZ_WEIGHTS = (7, 3, 1)


def _mrz_check(field: str, check: str) -> bool:
    """ICAO Doc 9303 part 3 §4.9: digits as-is, A-Z as 10-35, '<' as 0, weights 7-3-1."""
    total = 0
    for i, ch in enumerate(field):
        if ch.isdigit():
            value = int(ch)
        elif "A" <= ch <= "Z":
            value = ord(ch) - 55
        else:
            value = 0
        total += value * _MRZ_WEIGHTS[i % 3]
    return check.isdigit() and total % 10 == int(check)


@register("mrz")
@whole
def passport_mrz(value: str) -> bool:
    """Second line of a passport MRZ (ICAO 9303 TD3): document number, birth and expiry dates
    each carry a check digit."""
    line = value.upper()
    if len(line) != 44:
        return False
    return _mrz_check(line[0:9], line[9]) and _mrz_check(line[13:19], line[19]) and _mrz_check(line[21:27], line[27])


@register("passport_number")
@whole
def passport_number(value: str) -> bool:
    """A passport number given in context: 6-9 letters and digits, at least two digits
    (so "passport number: expired" is not one)."""
    compact = "".join(ch for ch in value if ch.isalnum())
    return 6 <= len(compact) <= 9 and sum(ch.isdigit() for ch in compact) >= 2


# --- contact data --------------------------------------------------------------------------


def _phone_digits_ok(digits: str) -> bool:
    # E.164 caps a number at 15 digits; below 8 it is an extension or a short code.
    return 8 <= len(digits) <= 15 and len(set(digits)) > 2


@register("phone")
def phone(value: str) -> list[Span]:
    """International phone number: 8-15 digits (E.164), the longest group-aligned prefix."""
    groups = [(m.start(), m.end()) for m in _DIGIT_GROUP.finditer(value)]
    digits = ""
    best = None
    for start, end in groups:
        digits += value[start:end]
        if len(digits) > 15:
            break
        if _phone_digits_ok(digits):
            best = end
    return [(0, best)] if best is not None else []


# --- dates ---------------------------------------------------------------------------------

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january", "janvier", "januar", "enero"),
            ("feb", "february", "fevrier", "février", "februar", "febrero"),
            ("mar", "march", "mars", "märz", "marz", "marzo"),
            ("apr", "april", "avril", "abril"),
            ("may", "mai", "mayo"),
            ("jun", "june", "juin", "juni", "junio"),
            ("jul", "july", "juillet", "juli", "julio"),
            ("aug", "august", "aout", "août", "agosto"),
            ("sep", "sept", "september", "septembre", "septiembre"),
            ("oct", "october", "octobre", "oktober", "octubre"),
            ("nov", "november", "novembre", "noviembre"),
            ("dec", "december", "decembre", "décembre", "dezember", "diciembre"),
        ),
        start=1,
    )
    for name in names
}
_DATE_TOKEN = re.compile(r"[0-9]+|[^\W\d_]+")


def _plausible_birth(year: int, month: int, day: int) -> bool:
    if year < 100:
        year += 1900 if year > datetime.date.today().year % 100 else 2000
    try:
        born = datetime.date(year, month, day)
    except ValueError:
        return False
    return datetime.date(1900, 1, 1) <= born <= datetime.date.today()


@register("birth_date")
@whole
def birth_date(value: str) -> bool:
    """A real calendar date between 1900 and today, in any of the usual orders
    (Y-M-D, D/M/Y, M/D/Y, '12 March 1985', 'March 12, 1985')."""
    tokens = _DATE_TOKEN.findall(value.lower())
    numbers = [int(t) for t in tokens if t.isdigit()]
    words = [t for t in tokens if not t.isdigit() and t not in ("st", "nd", "rd", "th", "of")]
    if words:
        month = next((_MONTHS[w] for w in words if w in _MONTHS), None)
        if month is None or len(numbers) != 2:
            return False
        day, year = (numbers[0], numbers[1]) if numbers[1] > 31 else (numbers[1], numbers[0])
        return _plausible_birth(year, month, day)
    if len(numbers) != 3:
        return False
    a, b, c = numbers
    if a > 31:  # year first
        return _plausible_birth(a, b, c)
    return _plausible_birth(c, b, a) or _plausible_birth(c, a, b)


# --- network -------------------------------------------------------------------------------


@register("ipv4")
@whole
def ipv4(value: str) -> bool:
    """Dotted-quad IPv4 address, each octet 0-255, no leading zeros."""
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


@register("ipv6")
@whole
def ipv6(value: str) -> bool:
    """IPv6 address with at least two non-empty groups, one of them holding a digit, so C++
    'std::vector' and 'dead::beef' are not addresses."""
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    groups = [g for g in re.split(r"[:.]", value) if g]
    return len(groups) >= 2 and any(any(ch.isdigit() for ch in g) for g in groups)


# --- secrets -------------------------------------------------------------------------------


@register("not_placeholder")
@whole
def not_placeholder(value: str) -> bool:
    """Rejects documentation placeholders ('sk-xxxxxxxx...', 'AKIA0000000000000000'):
    a real key's random part uses many distinct characters."""
    tail = value[-16:]
    return len(set(tail)) >= 6


@register("jwt")
@whole
def jwt(value: str) -> bool:
    """A JWS compact token whose header decodes to a JSON object with an 'alg' (RFC 7515)."""
    header = value.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        parsed = json.loads(decoded)
    except (ValueError, binascii.Error):
        return False
    return isinstance(parsed, dict) and "alg" in parsed


_BECH32M_CONST = 0x2BC830A3  # BIP-350


@register("bitcoin")
@whole
def bitcoin_address(value: str) -> bool:
    """Bitcoin address: Base58Check (P2PKH/P2SH) or Bech32/Bech32m (BIP-173/350)."""
    if bitcoin.is_valid(value):
        return True
    lowered = value.lower()
    if not lowered.startswith("bc1p") or value not in (lowered, value.upper()):
        return False
    # stdnum knows Bech32 (segwit v0) only; taproot addresses use the Bech32m constant.
    alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
    if not 14 <= len(lowered) <= 90 or any(ch not in alphabet for ch in lowered[3:]):
        return False
    data = [alphabet.index(ch) for ch in lowered[3:]]
    expanded = [ord(c) >> 5 for c in "bc"] + [0] + [ord(c) & 31 for c in "bc"]
    return bitcoin.bech32_checksum(expanded + data) == _BECH32M_CONST


# --- identifiers used by the regulation packs (dlp/packs/*.yaml) ---------------------------


@register("es_dni")
@whole
def es_dni(value: str) -> bool:
    """Spanish DNI or NIE: 8 digits (or X/Y/Z and 7) and the mod-23 control letter."""
    compact = "".join(ch for ch in value if ch.isalnum()).upper()
    return es_dni_module.is_valid(compact) or nie.is_valid(compact)


@register("it_codice_fiscale")
@whole
def it_codice_fiscale(value: str) -> bool:
    """Italian codice fiscale of a person: 16 characters with the odd/even check letter."""
    return codicefiscale.is_valid(value.upper())


@register("fr_nir")
@whole
def fr_nir(value: str) -> bool:
    """French social security number (NIR): 13 digits and the 97-complement key."""
    return nir.is_valid(digits_of(value) if value[:1].isdigit() else value)


@register("nl_bsn")
@whole
def nl_bsn(value: str) -> bool:
    """Dutch citizen service number (BSN): 9 digits, the eleven-test."""
    return bsn.is_valid(digits_of(value))


@register("de_idnr")
@whole
def de_idnr(value: str) -> bool:
    """German tax identification number (IdNr): 11 digits, ISO 7064 mod 11,10 check."""
    return idnr.is_valid(digits_of(value))


@register("has_digits")
@whole
def has_digits(value: str) -> bool:
    """A record or member number given in context: at least four digits in it."""
    return sum(ch.isdigit() for ch in value) >= 4
