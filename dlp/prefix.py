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


def _class_item(op: object, av: object) -> str:
    if op is c.LITERAL:
        return _escape_char(av)  # type: ignore[arg-type]
    if op is c.RANGE:
        low, high = av  # type: ignore[misc]
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
    def atom(self, op: object, av: object, flags: int) -> str:
        """The full (not prefix) expression of one node; assertions become empty."""
        if op is c.LITERAL:
            return _escape_char(av)  # type: ignore[arg-type]
        if op is c.NOT_LITERAL:
            return f"[^{_escape_char(av)}]"  # type: ignore[arg-type]
        if op is c.ANY:
            return r"[\s\S]" if flags & re.DOTALL else r"[^\n]"
        if op is c.IN:
            items = list(av)  # type: ignore[call-overload]
            negate = bool(items) and items[0][0] is c.NEGATE
            body = "".join(_class_item(o, a) for o, a in (items[1:] if negate else items))
            return f"[{'^' if negate else ''}{body}]"
        if op is c.CATEGORY:
            return _CATEGORIES[av]
        if op is c.AT:
            return ""
        if op is c.BRANCH:
            _, alternatives = av  # type: ignore[misc]
            return "(?:" + "|".join(self.sequence(alt, flags) for alt in alternatives) + ")"
        if op is c.SUBPATTERN:
            _, add, remove, body = av  # type: ignore[misc]
            return _case(self.sequence(body, (flags | add) & ~remove), flags, add, remove)
        if op in (c.MAX_REPEAT, c.MIN_REPEAT):
            low, high, body = av  # type: ignore[misc]
            inner = "(?:" + self.sequence(body, flags) + ")"
            return inner + (f"{{{low},}}" if high is c.MAXREPEAT else f"{{{low},{high}}}")
        raise UnsupportedSyntaxError(f"node {op}")

    def sequence(self, nodes: sre_parse.SubPattern | list, flags: int) -> str:
        return "".join(self.atom(op, av, flags) for op, av in nodes)

    def prefix_atom(self, op: object, av: object, flags: int) -> str:
        if op is c.AT:
            return ""
        if op in (c.LITERAL, c.NOT_LITERAL, c.ANY, c.IN, c.CATEGORY):
            return "(?:" + self.atom(op, av, flags) + ")?"
        if op is c.BRANCH:
            _, alternatives = av  # type: ignore[misc]
            return "(?:" + "|".join(self.prefix_sequence(list(alt), flags) for alt in alternatives) + ")"
        if op is c.SUBPATTERN:
            _, add, remove, body = av  # type: ignore[misc]
            return _case(self.prefix_sequence(list(body), (flags | add) & ~remove), flags, add, remove)
        if op in (c.MAX_REPEAT, c.MIN_REPEAT):
            _, high, body = av  # type: ignore[misc]
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
