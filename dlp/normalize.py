"""Turn text into the view the scanner matches against, and map matches back to the original.

The scanner never matches the raw text: a user who types a card number in fullwidth digits,
with zero-width spaces between them or with Cyrillic look-alike letters in an AWS key would
walk straight past ASCII patterns. `normalize()` builds a *scan view* and an offset map so a
match in the view can be redacted in the original (the characters that were stripped inside
a match are replaced along with it).

What the scan view does, per code point (ASCII text without control characters is returned
as-is, with no map: that is the fast path that keeps clean-text throughput high):

- NFKC compatibility folding, code point by code point: fullwidth digits and letters,
  mathematical alphanumerics, circled and parenthesised digits, ligatures, compatibility
  spaces. Per code point rather than over the whole string because combining marks are
  dropped anyway (below), so canonical composition across code points cannot change what
  the ASCII-oriented patterns see; it also makes every view character traceable to exactly
  one original code point.
- Dropped: format characters (Unicode category Cf: zero-width space/joiners, word joiner,
  BOM, bidi controls, soft hyphen, the U+E0000 tag block), combining and enclosing marks
  (Mn, Me: variation selectors, combining low line, ...), and C0/C1 control characters other
  than tab, newline and carriage return.
- Folded to ASCII: every Unicode decimal digit (Arabic-Indic, Devanagari, ...) to 0-9; every
  dash (category Pd) and the minus sign to '-'; every space separator to ' ' and the line and
  paragraph separators to '\\n'; the middle dot to '.'; fraction and division slashes to '/'.

Decisions:

- Separators inside digit runs are tolerated by the *patterns*, not removed here. Removing
  them would glue unrelated numbers together (a phone number next to a date, an IPv4 address)
  and destroy the structure that tells an SSN from a zip+4. Built-in patterns allow up to three
  separator characters (whitespace, '.', '-', '/', '\\', '_') between any two digits; see
  `builtin.SEP`.
- Homoglyphs: Cyrillic, Greek and a few other letters that render identically to a Latin
  letter are folded to that letter (a fixed one-to-one table taken from Unicode's
  confusables.txt, `_HOMOGLYPHS`, widened with Cherokee, Lisu, small capitals, Greek and
  Armenian in confusables.py). That is enough to stop "AKIA" spelled with a Cyrillic А.
  We do not compute the full UTS #39 skeleton: it is many-to-many, would break the one-to-one
  offset map and would fold legitimate non-Latin text into false positives.
- Base64: handled by the engine, not here (it is not an offset-preserving transformation).
  Runs of 16+ base64 characters are decoded once (no recursion); if the result is printable
  UTF-8 it is scanned with the same patterns and a hit redacts the whole encoded run. See
  `engine.Scanner`; nested, line-wrapped and hex runs, escapes and entities: decode.py.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from .budget import EVERY, checkpoint
from .confusables import CONFUSABLES

# Printable ASCII plus tab, LF and CR: text made only of these is its own scan view.
_PLAIN_ASCII = bytes([0x09, 0x0A, 0x0D, *range(0x20, 0x7F)])
_ASCII_RUN = re.compile(r"[\x09\x0a\x0d\x20-\x7e]+")

# One-to-one look-alikes from Unicode confusables.txt (only letters whose glyph is the Latin
# letter's in common fonts). Anything NFKC already folds is not listed.
_HOMOGLYPHS = {
    # Cyrillic capitals
    "А": "A",
    "В": "B",
    "Е": "E",
    "К": "K",
    "М": "M",
    "Н": "H",
    "О": "O",
    "Р": "P",
    "С": "C",
    "Т": "T",
    "Х": "X",
    "Ѕ": "S",
    "І": "I",
    "Ј": "J",
    "Ү": "Y",
    "Ԛ": "Q",
    "Ԝ": "W",
    "Һ": "h",
    # Cyrillic small
    "а": "a",
    "е": "e",
    "о": "o",
    "р": "p",
    "с": "c",
    "у": "y",
    "х": "x",
    "ѕ": "s",
    "і": "i",
    "ј": "j",
    "ԁ": "d",
    "ԛ": "q",
    "ԝ": "w",
    "һ": "h",
    "ӏ": "l",
    # Greek capitals
    "Α": "A",
    "Β": "B",
    "Ε": "E",
    "Ζ": "Z",
    "Η": "H",
    "Ι": "I",
    "Κ": "K",
    "Μ": "M",
    "Ν": "N",
    "Ο": "O",
    "Ρ": "P",
    "Τ": "T",
    "Υ": "Y",
    "Χ": "X",
    # Greek small
    "ο": "o",
    "ν": "v",
    "ι": "i",
    "κ": "k",
    # Others: Armenian, Latin small capitals / dotless forms
    "օ": "o",
    "ս": "u",
    "ı": "i",
    "ȷ": "j",
    "ɡ": "g",
    # Cherokee, Lisu, small capitals and more Greek/Armenian: confusables.py
    **CONFUSABLES,
}

_FOLD = {
    "\u00b7": ".",  # middle dot
    "\u2044": "/",  # fraction slash
    "\u2215": "/",  # division slash
    "\u2212": "-",  # minus sign
    "\u2028": "\n",  # line separator
    "\u2029": "\n",  # paragraph separator
}


@lru_cache(maxsize=8192)
def _fold_char(ch: str) -> str:
    """The scan-view replacement for one non-ASCII (or control) code point; '' drops it."""
    cp = ord(ch)
    if cp < 0x20 or 0x7F <= cp < 0xA0:
        return ""  # C0/C1 controls (tab, LF, CR never get here)
    category = unicodedata.category(ch)
    if category in ("Cf", "Mn", "Me", "Cs"):
        # Cs: a lone surrogate (JSON allows "\ud800") cannot be encoded for RE2.
        return ""
    out = []
    for c in unicodedata.normalize("NFKC", ch):
        if c.isascii():
            if c.isprintable() or c in "\t\n\r":
                out.append(c)
            continue
        cat = unicodedata.category(c)
        if cat in ("Cf", "Mn", "Me", "Cc"):
            continue
        digit = unicodedata.decimal(c, None)
        if digit is not None:
            out.append(str(digit))
        elif cat == "Pd":
            out.append("-")
        elif cat == "Zs":
            out.append(" ")
        else:
            out.append(_FOLD.get(c) or _HOMOGLYPHS.get(c) or c)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Normalized:
    """The scan view of `original`, with a map from view indices back to original indices.

    `starts[i]`/`ends[i]` are the original span of view character i (several view characters
    can share one original code point, e.g. NFKC of '⑴' is '(1)'). Both are None when the view
    is the original.
    """

    original: str
    text: str
    starts: list[int] | None = None
    ends: list[int] | None = None

    @property
    def is_identity(self) -> bool:
        return self.starts is None

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map the view span [start, end) to the smallest original span that produced it."""
        if self.starts is None or self.ends is None:
            return start, end
        if start >= end:
            pos = self.starts[start] if start < len(self.starts) else len(self.original)
            return pos, pos
        return self.starts[start], self.ends[end - 1]

    def original_index(self, view_index: int) -> int:
        """Where view position `view_index` (a boundary, not a character) falls in the original."""
        if self.starts is None:
            return view_index
        if view_index >= len(self.starts):
            return len(self.original)
        return self.starts[view_index]


def is_plain_ascii(text: str) -> bool:
    """True when `text` needs no normalisation (the common case, checked at memcpy speed)."""
    return text.isascii() and not text.encode("ascii").translate(None, _PLAIN_ASCII)


def normalize(text: str) -> Normalized:
    """Build the scan view of `text` (see the module docstring for what changes)."""
    if is_plain_ascii(text):
        return Normalized(original=text, text=text)

    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    length = len(text)
    count = 0
    while pos < length:
        count += 1
        if not count % EVERY:
            checkpoint()  # non-ASCII is folded one code point at a time
        run = _ASCII_RUN.match(text, pos)
        if run is not None:
            end = run.end()
            pieces.append(run.group())
            starts.extend(range(pos, end))
            ends.extend(range(pos + 1, end + 1))
            pos = end
            continue
        replacement = _fold_char(text[pos])
        if replacement:
            pieces.append(replacement)
            starts.extend([pos] * len(replacement))
            ends.extend([pos + 1] * len(replacement))
        pos += 1
    return Normalized(original=text, text="".join(pieces), starts=starts, ends=ends)
