"""The alert condition language: a hand-written tokenizer and recursive-descent parser.

Conditions come from an operator's file, so they are parsed into a small
frozen syntax tree and never handed to ``eval``. The grammar::

    condition  := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | primary
    primary    := "(" condition ")" | deviates | comparison
    comparison := signal OP NUMBER              OP: < <= > >= == !=
                | word ("==" | "!=") STRING
    deviates   := "deviates" "(" signal "," NUMBER ")"
    signal     := NAME [ "{" "feature" "=" STRING "}" ]

``and`` binds tighter than ``or``, as in Python and PromQL. NAME is one of
:data:`~sidecar.alerting.signals.SIGNALS`; the ``{feature="..."}`` selector is
allowed only on the per-feature signals (psi, ks_pvalue, chi2_pvalue). A
*word* is a signal of :data:`~sidecar.alerting.signals.TEXT_SIGNALS`
(``experiment_decision``), whose value is one of a fixed list of words: it is
only tested for equality with one of them (``experiment_decision ==
"revert"``), and a word not on its list is an error. NUMBER is a decimal or
scientific literal with an optional sign (``0.85``, ``-1``, ``1e-3``).
STRING is quoted with ``"`` or ``'``; a backslash escapes the next character.

Errors are :class:`ConditionError`, whose ``position`` is the 0-based
character offset into the text (as Python indexes strings), so
``psi >> 0.2`` reports ``unexpected '>' at position 5``.

Usage::

    condition = parse("psi > 0.2 and accuracy_drop > 0.05")
    str(condition)  # "psi > 0.2 and accuracy_drop > 0.05"
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

from sidecar.alerting.signals import FEATURE_SIGNALS, SIGNALS, TEXT_SIGNALS

__all__ = [
    "OPERATORS",
    "And",
    "Compare",
    "Condition",
    "ConditionError",
    "Deviates",
    "Equals",
    "Not",
    "Operator",
    "Or",
    "SignalRef",
    "leaves",
    "parse",
]

Operator = Literal["<", "<=", ">", ">=", "==", "!="]
OPERATORS: Final[tuple[Operator, ...]] = ("<", "<=", ">", ">=", "==", "!=")
_OPERATOR: Final[dict[str, Operator]] = {op: op for op in OPERATORS}
Equality = Literal["==", "!="]
_EQUALITY: Final[dict[str, Equality]] = {"==": "==", "!=": "!="}
_KEYWORDS: Final = frozenset({"and", "or", "not"})
_SELECTOR_KEYS: Final = ("feature",)

_NUMBER: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PUNCTUATION: Final = frozenset("(){},=")


class ConditionError(ValueError):
    """A condition that does not parse; ``position`` is a 0-based character offset."""

    def __init__(self, message: str, position: int, hint: str = "") -> None:
        super().__init__(f"{message} at position {position}" + (f"; {hint}" if hint else ""))
        self.message = message
        self.position = position
        self.hint = hint


def _number(value: float) -> str:
    """A threshold as written back: ``5`` not ``5.0``, ``0.85`` not ``0.8500``."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class SignalRef:
    """A signal, optionally one feature of a per-feature signal (``feature=None``: the worst feature)."""

    name: str
    feature: str | None = None

    def __str__(self) -> str:
        return self.name if self.feature is None else f"{self.name}{{feature={_quoted(self.feature)}}}"


@dataclass(frozen=True, slots=True)
class Compare:
    signal: SignalRef
    op: Operator
    threshold: float

    def __str__(self) -> str:
        return f"{self.signal} {self.op} {_number(self.threshold)}"


@dataclass(frozen=True, slots=True)
class Equals:
    """A text signal tested against one of its words: ``experiment_decision == "revert"``."""

    signal: SignalRef
    op: Equality
    word: str

    def __str__(self) -> str:
        return f"{self.signal} {self.op} {_quoted(self.word)}"


@dataclass(frozen=True, slots=True)
class Deviates:
    """True when the signal lies more than ``k`` standard deviations from its rolling mean."""

    signal: SignalRef
    k: float

    def __str__(self) -> str:
        return f"deviates({self.signal}, {_number(self.k)})"


@dataclass(frozen=True, slots=True)
class Not:
    operand: Condition

    def __str__(self) -> str:
        inner = str(self.operand)
        return f"not ({inner})" if isinstance(self.operand, And | Or) else f"not {inner}"


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Condition, ...]

    def __str__(self) -> str:
        # Only an "or" needs parentheses inside an "and": everything else binds tighter.
        return " and ".join(f"({c})" if isinstance(c, Or) else str(c) for c in self.operands)


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Condition, ...]

    def __str__(self) -> str:
        return " or ".join(str(c) for c in self.operands)


Condition = Compare | Equals | Deviates | Not | And | Or


def leaves(condition: Condition) -> Iterator[Compare | Equals | Deviates]:
    """The comparisons and ``deviates`` calls of a condition, left to right."""
    if isinstance(condition, Compare | Equals | Deviates):
        yield condition
    elif isinstance(condition, Not):
        yield from leaves(condition.operand)
    else:
        for operand in condition.operands:
            yield from leaves(operand)


_TokenKind = Literal["name", "number", "string", "op", "punct", "end"]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _TokenKind
    text: str  # for a string: its value, unquoted
    position: int

    def shown(self) -> str:
        if self.kind == "end":
            return "end of condition"
        if self.kind == "string":
            return f"string {_quoted(self.text)}"
        return repr(self.text)


def _tokenize(text: str) -> Iterator[_Token]:
    """Tokens on demand, so that errors come out left to right whichever stage finds them."""
    last: _Token | None = None
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if text.startswith(("<=", ">=", "==", "!="), i):
            token, end = _Token("op", text[i : i + 2], i), i + 2
        elif char in "<>":
            token, end = _Token("op", char, i), i + 1
        elif char in _PUNCTUATION:  # "=" among them: valid only inside a selector
            token, end = _Token("punct", char, i), i + 1
        elif char in "\"'":
            token, end = _string(text, i)
        elif (number := _NUMBER.match(text, i)) is not None and (char not in "+-" or _sign_allowed(last)):
            token, end = _Token("number", number.group(), i), number.end()
        elif (name := _NAME.match(text, i)) is not None:
            token, end = _Token("name", name.group(), i), name.end()
        elif char == "!":
            raise ConditionError("unexpected '!'", i, "did you mean '!=' or 'not'?")
        else:
            raise ConditionError(f"unexpected {char!r}", i)
        yield token
        last, i = token, end
    yield _Token("end", "", n)


def _sign_allowed(last: _Token | None) -> bool:
    # A sign belongs to a number only where a number may start; elsewhere "+" or "-" is an error.
    return last is not None and (last.kind == "op" or last.text == ",")


def _string(text: str, start: int) -> tuple[_Token, int]:
    quote = text[start]
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            chars.append(text[i + 1])
            i += 2
        elif char == quote:
            return _Token("string", "".join(chars), start), i + 1
        else:
            chars.append(char)
            i += 1
    raise ConditionError("unterminated string", start)


def parse(text: str) -> Condition:
    """Parse a condition; raise :class:`ConditionError` naming the position of the first problem."""
    parser = _Parser(_tokenize(text))
    condition = parser.condition()
    parser.expect_end()
    return condition


class _Parser:
    def __init__(self, tokens: Iterator[_Token]) -> None:
        self._tokens = tokens
        self._current: _Token | None = None

    def _peek(self) -> _Token:
        # The next token is read only when asked for, so a bad token is reported
        # after every problem to its left, not before.
        if self._current is None:
            self._current = next(self._tokens)
        return self._current

    def _next(self) -> _Token:
        token = self._peek()
        if token.kind != "end":
            self._current = None
        return token

    def _is(self, kind: _TokenKind, text: str) -> bool:
        token = self._peek()
        return token.kind == kind and token.text == text

    def _expect(self, kind: _TokenKind, text: str, what: str) -> _Token:
        token = self._next()
        if token.kind != kind or token.text != text:
            raise ConditionError(f"unexpected {token.shown()}", token.position, f"expected {what}")
        return token

    def expect_end(self) -> None:
        token = self._peek()
        if token.kind != "end":
            hint = ""
            if token.kind == "name":
                hint = "use 'and' or 'or' to combine conditions"
            elif token.text == ")":
                hint = "no '(' to close"
            raise ConditionError(f"unexpected {token.shown()}", token.position, hint)

    def condition(self) -> Condition:
        return self._or()

    def _or(self) -> Condition:
        operands = [self._and()]
        while self._is("name", "or"):
            self._next()
            operands.append(self._and())
        # "(a or b) or c" is "a or b or c": one flat tree per meaning, which also prints back as written.
        flat = tuple(c for operand in operands for c in (operand.operands if isinstance(operand, Or) else (operand,)))
        return flat[0] if len(flat) == 1 else Or(flat)

    def _and(self) -> Condition:
        operands = [self._not()]
        while self._is("name", "and"):
            self._next()
            operands.append(self._not())
        flat = tuple(c for operand in operands for c in (operand.operands if isinstance(operand, And) else (operand,)))
        return flat[0] if len(flat) == 1 else And(flat)

    def _not(self) -> Condition:
        if self._is("name", "not"):
            self._next()
            return Not(self._not())
        return self._primary()

    def _primary(self) -> Condition:
        token = self._peek()
        if token.kind == "punct" and token.text == "(":
            self._next()
            inner = self.condition()
            self._expect("punct", ")", "')'")
            return inner
        if token.kind == "name" and token.text == "deviates":
            return self._deviates()
        if token.kind == "number":
            raise ConditionError(
                f"unexpected {token.shown()}", token.position, "put the signal first, e.g. accuracy < 0.85"
            )
        if token.kind != "name" or token.text in _KEYWORDS:
            raise ConditionError(f"unexpected {token.shown()}", token.position, "expected a signal, 'not' or '('")
        signal = self._signal()
        op = self._next()
        words = TEXT_SIGNALS.get(signal.name)
        if words is not None:
            equality = _EQUALITY.get(op.text) if op.kind == "op" else None
            if equality is None:
                hint = f"{signal.name} is a word: test it with == or != and a quoted word"
                raise ConditionError(f"unexpected {op.shown()}", op.position, hint)
            return Equals(signal, equality, self._word(signal.name, words))
        if op.kind != "op":
            hint = "use '==' to test equality" if op.text == "=" else f"expected one of {' '.join(OPERATORS)}"
            raise ConditionError(f"unexpected {op.shown()}", op.position, hint)
        return Compare(signal, _OPERATOR[op.text], self._number())

    def _word(self, name: str, words: tuple[str, ...]) -> str:
        token = self._next()
        expected = ", ".join(_quoted(word) for word in words)
        if token.kind != "string":
            raise ConditionError(f"unexpected {token.shown()}", token.position, f"expected one of {expected}")
        if token.text not in words:
            close = difflib.get_close_matches(token.text, words, n=1)
            hint = f"did you mean {_quoted(close[0])}?" if close else f"expected one of {expected}"
            raise ConditionError(f"unknown {name} {_quoted(token.text)}", token.position, hint)
        return token.text

    def _deviates(self) -> Deviates:
        self._next()
        self._expect("punct", "(", "'(' after 'deviates'")
        name = self._peek()
        signal = self._signal()
        if signal.name in TEXT_SIGNALS:
            raise ConditionError(f"deviates() needs a number signal, and {signal.name} is a word", name.position)
        self._expect("punct", ",", "',' and the number of standard deviations")
        start = self._peek().position
        k = self._number()
        if not k > 0:
            raise ConditionError(f"number of standard deviations {_number(k)} is not positive", start)
        self._expect("punct", ")", "')'")
        return Deviates(signal, k)

    def _signal(self) -> SignalRef:
        token = self._next()
        if token.kind != "name" or token.text in _KEYWORDS or token.text == "deviates":
            raise ConditionError(f"unexpected {token.shown()}", token.position, "expected a signal name")
        name = token.text
        if name not in SIGNALS:
            close = difflib.get_close_matches(name, sorted(SIGNALS), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known signals: {', '.join(sorted(SIGNALS))}"
            raise ConditionError(f"unknown signal {name!r}", token.position, hint)
        if not self._is("punct", "{"):
            return SignalRef(name)
        brace = self._next()
        if name not in FEATURE_SIGNALS:
            raise ConditionError(
                f"unexpected selector on {name!r}",
                brace.position,
                f"only {', '.join(FEATURE_SIGNALS)} have per-feature values",
            )
        key = self._next()
        if key.kind != "name" or key.text not in _SELECTOR_KEYS:
            raise ConditionError(f"unknown selector key {key.shown()}", key.position, "expected 'feature'")
        self._expect("punct", "=", "'=' after 'feature'")
        value = self._next()
        if value.kind != "string":
            raise ConditionError(
                f"unexpected {value.shown()}", value.position, 'expected a quoted feature name such as "age"'
            )
        self._expect("punct", "}", "'}'")
        return SignalRef(name, value.text)

    def _number(self) -> float:
        token = self._next()
        if token.kind != "number":
            raise ConditionError(f"unexpected {token.shown()}", token.position, "expected a number")
        value = float(token.text)
        if not math.isfinite(value):
            raise ConditionError(f"number {token.text} out of range", token.position)
        return value
