"""Derive, from a pattern, an RE2 expression for every *prefix* of what the pattern matches.

The streaming window uses it to decide how much of the not-yet-sent text to hold back: a
suffix of the buffer that fully matches the prefix expression of some pattern could still
turn into a match when the next delta arrives, so it is held; everything before the earliest
such suffix can be released. That keeps the hold-back to the trailing token or two in normal
text instead of a fixed number of characters.

The construction works on the syntax tree Python's own regex parser produces, which covers
the subset of RE2 syntax our patterns use. Assertions (\\b, ^, $) are dropped, which only
makes the prefix language larger (holds more, never less). Where the expression uses RE2
syntax that Python's parser would read differently (Unicode classes, POSIX classes, \\Q..\\E,
{,n}, ...) we do not guess: `prefix_expression` returns None and the caller treats every
suffix as a possible match start (hold up to the window limit).

For those expressions `widened_prefix_expression` first rewrites the RE2-only syntax into a
*wider* expression Python's parser reads (a Unicode or POSIX class becomes "any character",
\\Q..\\E becomes its escaped literal, \\x{..} the character, \\z and (?U) are dropped) and derives
the prefixes of that: a superset of the real prefix language, so the stream holds a little
more than it must, never less, and the hold stays bounded by the pattern's shape instead of
the whole window. `stream_hold_problem` is what the console says when even that fails, or
when a pattern could start a match anywhere in ordinary prose (a leading `.*`, a repeated
wide class) and would hold back most of every stream.

Rules, for a parsed pattern P (pre(P) always contains the empty string):
    pre(c) = c?                       for a literal, class or '.'
    pre(A B) = pre(A) | A pre(B)      (nested, so the size stays linear)
    pre(A | B) = pre(A) | pre(B)
    pre(X{m,n}) = X{0,n-1} pre(X)     (n = infinity: X* pre(X); n = 0: empty)
"""

from __future__ import annotations

import re
import re._constants as c
import re._parser as sre_parse
import warnings
from typing import Any

import re2

# Syntax where RE2 and Python's parser disagree; we refuse instead of misreading it.
_UNSAFE = re.compile(r"\\[pPQECz]|\[:\^?[a-z]+:\]|\{,|\(\?[a-zA-Z]*U|\\x\{")


class UnsupportedSyntaxError(Exception):
    pass


def _escape_char(code: int) -> str:
    ch = chr(code)
    if ch.isalnum() or ch == "_":
        return ch
    if 0x20 < code < 0x7F:
        return "\\" + ch
    return f"\\x{{{code:x}}}"


def _class_item(op: object, av: Any) -> str:
    if op is c.LITERAL:
        return _escape_char(av)
    if op is c.RANGE:
        low, high = av
        return f"{_escape_char(low)}-{_escape_char(high)}"
    if op is c.CATEGORY:
        return _CATEGORIES[av]
    raise UnsupportedSyntaxError(f"class item {op}")


_CATEGORIES = {
    c.CATEGORY_DIGIT: r"\d",
    c.CATEGORY_NOT_DIGIT: r"\D",
    c.CATEGORY_SPACE: r"\s",
    c.CATEGORY_NOT_SPACE: r"\S",
    c.CATEGORY_WORD: r"\w",
    c.CATEGORY_NOT_WORD: r"\W",
}


def _case(body: str, flags: int, add: int, remove: int) -> str:
    """Re-emit a scoped case-insensitivity change (the only flag that changes what a literal
    or class matches; DOTALL is resolved when '.' is emitted)."""
    if add & re.IGNORECASE and not flags & re.IGNORECASE:
        return f"(?i:{body})"
    if remove & re.IGNORECASE and flags & re.IGNORECASE:
        return f"(?-i:{body})"
    return f"(?:{body})"


class _Builder:
    def atom(self, op: object, av: Any, flags: int) -> str:
        """The full (not prefix) expression of one node; assertions become empty."""
        if op is c.LITERAL:
            return _escape_char(av)
        if op is c.NOT_LITERAL:
            return f"[^{_escape_char(av)}]"
        if op is c.ANY:
            return r"[\s\S]" if flags & re.DOTALL else r"[^\n]"
        if op is c.IN:
            items = list(av)
            negate = bool(items) and items[0][0] is c.NEGATE
            body = "".join(_class_item(o, a) for o, a in (items[1:] if negate else items))
            return f"[{'^' if negate else ''}{body}]"
        if op is c.CATEGORY:
            return _CATEGORIES[av]
        if op is c.AT:
            return ""
        if op is c.BRANCH:
            _, alternatives = av
            return "(?:" + "|".join(self.sequence(alt, flags) for alt in alternatives) + ")"
        if op is c.SUBPATTERN:
            _, add, remove, body = av
            return _case(self.sequence(body, (flags | add) & ~remove), flags, add, remove)
        if op in (c.MAX_REPEAT, c.MIN_REPEAT):
            low, high, body = av
            inner = "(?:" + self.sequence(body, flags) + ")"
            return inner + (f"{{{low},}}" if high is c.MAXREPEAT else f"{{{low},{high}}}")
        raise UnsupportedSyntaxError(f"node {op}")

    def sequence(self, nodes: sre_parse.SubPattern | list, flags: int) -> str:
        return "".join(self.atom(op, av, flags) for op, av in nodes)

    def prefix_atom(self, op: object, av: Any, flags: int) -> str:
        if op is c.AT:
            return ""
        if op in (c.LITERAL, c.NOT_LITERAL, c.ANY, c.IN, c.CATEGORY):
            return "(?:" + self.atom(op, av, flags) + ")?"
        if op is c.BRANCH:
            _, alternatives = av
            return "(?:" + "|".join(self.prefix_sequence(list(alt), flags) for alt in alternatives) + ")"
        if op is c.SUBPATTERN:
            _, add, remove, body = av
            return _case(self.prefix_sequence(list(body), (flags | add) & ~remove), flags, add, remove)
        if op in (c.MAX_REPEAT, c.MIN_REPEAT):
            _, high, body = av
            if high == 0:
                return ""
            inner = "(?:" + self.sequence(body, flags) + ")"
            count = "*" if high is c.MAXREPEAT else f"{{0,{high - 1}}}"
            return f"(?:{inner}{count}{self.prefix_sequence(list(body), flags)})"
        raise UnsupportedSyntaxError(f"node {op}")

    def prefix_sequence(self, nodes: list, flags: int) -> str:
        if not nodes:
            return ""
        head_op, head_av = nodes[0]
        if len(nodes) == 1:
            return self.prefix_atom(head_op, head_av, flags)
        rest = self.prefix_sequence(nodes[1:], flags)
        head_full = self.atom(head_op, head_av, flags)
        return f"(?:{self.prefix_atom(head_op, head_av, flags)}|{head_full}{rest})"


def prefix_expression(expression: str) -> str | None:
    """An RE2 expression matching every prefix of every match of `expression`, or None when
    the expression uses syntax we cannot translate faithfully."""
    if _UNSAFE.search(expression):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "possible nested set" and friends: refuse
            parsed = sre_parse.parse(expression)
        flags = parsed.state.flags
        result = _Builder().prefix_sequence(list(parsed), flags)
        if flags & re.IGNORECASE:
            result = f"(?i:{result})"
    except (UnsupportedSyntaxError, re.error, Warning, RecursionError, KeyError):
        return None
    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(result or "(?:)", options)
    except re2.error:
        return None
    return result


# ── RE2-only syntax, widened ──

_WIDE_TOKEN = re.compile(
    r"\\[pP](?:\{[^}]*\}|[A-Za-z])|\\Q(?:.*?)(?:\\E|$)|\\x\{([0-9A-Fa-f]{1,6})\}|\\[zC]|\\.|\[:\^?[a-z]+:\]|\[|\]", re.S
)


def _widen(expression: str) -> str | None:
    """`expression` with RE2-only syntax replaced by wider syntax Python parses; None when
    something cannot be widened safely ({,n}: RE2 and Python disagree on its meaning)."""
    if "{," in expression:
        return None
    out: list[str] = []
    pos = 0
    in_class = negated = False
    for token in _WIDE_TOKEN.finditer(expression):
        if token.start() < pos:
            continue  # consumed as a class's leading '^' or ']'
        out.append(expression[pos : token.start()])
        pos = token.end()
        text = token.group()
        if text == "[" and not in_class:
            in_class, negated = True, expression[pos : pos + 1] == "^"
            if negated:
                out.append("[^")
                pos += 1
            else:
                out.append("[")
            if expression[pos : pos + 1] == "]":  # a ']' first in a class is a literal
                out.append("\\]")
                pos += 1
            continue
        if text == "]" and in_class:
            in_class = negated = False
            out.append(text)
            continue
        wide = text[:2] in ("\\p", "\\P", "\\C") or text.startswith("[:")
        if wide and negated:
            return None  # widening an item of a negated class would narrow the class
        if wide:
            out.append("\\s\\S" if in_class else "[\\s\\S]")
        elif text.startswith("\\Q"):
            literal = text[2:].removesuffix("\\E")
            out.append("".join(c if c.isalnum() else "\\" + c for c in literal))
        elif token.group(1) is not None:
            out.append(f"\\U{int(token.group(1), 16):08x}")
        elif text == "\\z":
            out.append("")  # an assertion: the prefix language ignores it anyway
        else:
            out.append(text)
    out.append(expression[pos:])
    # (?U) swaps greediness: the language is the same, so the flag is simply dropped.
    widened = re.sub(r"\(\?([a-zA-Z]*)U([a-zA-Z]*)([:)])", r"(?\1\2\3", "".join(out))
    return widened.replace("(?)", "")


def widened_prefix_expression(expression: str) -> str | None:
    """`prefix_expression`, or when RE2-only syntax stops it, the prefixes of a wider
    expression (holds a little more, never less); None when neither can be derived."""
    exact = prefix_expression(expression)
    if exact is not None or not _UNSAFE.search(expression):
        return exact
    widened = _widen(expression)
    if widened is None or _UNSAFE.search(widened):
        return None
    return prefix_expression(widened)


# Ordinary text a pattern should not be able to claim as the start of a match: prose, numbers
# and punctuation, JSON, code, on one line and over several.
_PROBES = (
    "The quarterly report was shared with the claims team on Tuesday, and everyone agreed that "
    "the figures looked reasonable given the season. Next steps: review, sign off, archive it.",
    'Order 42 shipped in 3 boxes (12.5 kg total); see ticket #7781 and {"status": "ok", "n": 3}.',
    "def total(items):\n    return sum(i.price * i.qty for i in items)  # no tax here\n\n",
    "we will meet the whole team next week to plan the launch and talk about the budget for the "
    "spring campaign and the hiring plan for the new office",
)
# Built-in patterns hold at most ~10 characters of these; a pattern that holds more than this
# would delay ordinary streams by whole sentences.
HOLD_LIMIT = 64


def stream_hold_problem(expression: str) -> str | None:
    """Why the streaming window cannot bound this expression, for the console; None if it can."""
    prefix = widened_prefix_expression(expression)
    if prefix is None:
        return (
            "the gateway cannot work out how much of a streamed answer this expression needs held back "
            "(RE2-only syntax such as {,n} or a Unicode class inside a negated class); write the repetition "
            "as {0,n} or list the characters"
        )
    options = re2.Options()
    options.log_errors = False
    viable = re2.compile(f"(?:{prefix})\\z", options)
    held = 0
    for probe in _PROBES:
        # The stream may stop at any character: measure the hold after each one.
        for end in range(HOLD_LIMIT, len(probe) + 1):
            match = viable.search(probe[:end])
            held = max(held, end - (match.start() if match is not None else end))
    if held > HOLD_LIMIT:
        return (
            f"a match could start almost anywhere in ordinary text (it would hold back {held} characters "
            "of a streamed answer at a time); start the expression with something specific, or bound a "
            "leading repetition such as .* or [a-z ]+ to {0,n}"
        )
    return None
