"""Typed values out of a parsed YAML mapping, with one problem line per bad key.

The experiment definition is validated in one pass that collects every
problem, so a person fixes the file at once rather than failure by failure.
:class:`Fields` reads one key at a time: the value when it is good, else
None with the problem recorded, naming the file and the key path
(``metrics.primary[0].source``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from sidecar.syntax.sampling import SourceKind, parse_source

__all__ = ["NAME", "Fields", "base_url", "join", "show"]

# Names that become label values: lower case, so one arm is not two series.
NAME: Final = re.compile(r"[a-z0-9_-]+")
_SHOWN: Final = 60  # characters of a bad value quoted in a message

C = TypeVar("C", bound=str)
P = TypeVar("P")


class Fields:
    """Reads typed values out of parsed YAML, collecting one problem line per bad key in :attr:`problems`.

    Usage::

        fields = Fields("experiment.yaml")
        alpha = fields.number({"alpha": 2}, "alpha", "", low=0, high=1)  # None
        fields.problems  # ["experiment.yaml: alpha is 2; expected a number in [0, 1]"]
    """

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.problems: list[str] = []

    def add(self, path: str, text: str) -> None:
        """One problem line, the key path then what is wrong: ``FILE: correction is 'sidak'; expected ...``."""
        self.problems.append(f"{self.origin}: {path} {text}")

    def unknown(self, raw: dict[Any, Any], path: str, allowed: tuple[str, ...]) -> None:
        for key in raw:
            if key not in allowed:
                self.add(
                    path or "the definition", f"has the unknown key {show(key)}; expected one of: {', '.join(allowed)}"
                )

    def name(self, raw: dict[Any, Any], key: str, path: str) -> str | None:
        value = raw.get(key)
        if not isinstance(value, str) or not NAME.fullmatch(value):
            self.add(join(path, key), f"is {show(value)}; expected lower-case letters, digits, _ and -")
            return None
        return value

    def choice(
        self,
        raw: dict[Any, Any],
        key: str,
        path: str,
        choices: tuple[C, ...],
        *,
        default: C | None = None,
        required: bool = False,
    ) -> C | None:
        if key not in raw:
            if required:
                self.add(join(path, key), f"is required; expected one of {', '.join(choices)}")
            return default
        value = raw[key]
        for choice in choices:
            if value == choice:
                return choice
        self.add(join(path, key), f"is {show(value)}; expected one of {', '.join(choices)}")
        return None

    def number(
        self,
        raw: dict[Any, Any],
        key: str,
        path: str,
        *,
        low: float = -math.inf,
        high: float = math.inf,
        low_open: bool = False,
        high_open: bool = False,
        default: float | None = None,
        required: bool = False,
    ) -> float | None:
        """A finite number in the interval; ``low_open``/``high_open`` exclude that end."""
        if key not in raw:
            if required:
                self.add(join(path, key), "is required")
            return default
        value = raw[key]
        # YAML reads `yes` as true, and bool is an int in Python: refuse it as a number.
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.add(join(path, key), f"is {show(value)}; expected a finite number")
            return None
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        if below or above:
            if math.isinf(high):
                allowed = f"{'>' if low_open else '>='} {low:g}"
            else:
                allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            self.add(join(path, key), f"is {value!r}; expected a number {allowed}")
            return None
        return float(value)

    def flag(self, raw: dict[Any, Any], key: str, path: str, *, default: bool) -> bool | None:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            self.add(join(path, key), f"is {show(value)}; expected true or false")
            return None
        return value

    def key_source(self, raw: dict[Any, Any], key: str, path: str) -> tuple[SourceKind, str] | None:
        """``header:NAME`` or ``feature:NAME``; absent or null is None, and no problem."""
        if raw.get(key) is None:
            return None
        value = raw[key]
        if not isinstance(value, str):
            self.add(join(path, key), f"is {show(value)}; expected 'header:NAME' or 'feature:NAME'")
            return None
        return self._parsed(value, join(path, key), parse_source)

    def url(self, raw: dict[Any, Any], key: str, path: str) -> str | None:
        """An http(s) base URL (:func:`base_url`); absent or null is None, and no problem."""
        if raw.get(key) is None:
            return None
        value = raw[key]
        if not isinstance(value, str):
            self.add(join(path, key), f"is {show(value)}; expected an http:// or https:// URL")
            return None
        return self._parsed(value, join(path, key), base_url)

    def _parsed(self, value: str, path: str, parse: Callable[[str], P]) -> P | None:
        try:
            return parse(value)
        except ValueError as exc:
            self.add(path, f"is {show(value)}: {exc}")
            return None


def base_url(text: str) -> str:
    """An http(s) base URL with a host, a port from 1 to 65535 and no query or fragment, without a trailing slash.

    Raises ``ValueError`` saying what is expected::

        base_url("http://challenger:8080/")  # "http://challenger:8080"
    """
    value = text.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host, e.g. http://challenger:8080")
    if parts.query or parts.fragment:
        raise ValueError("expected a URL without query string or fragment; request paths are appended to it")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("expected a URL whose port is from 1 to 65535")
    # The request path is appended to the base, so a trailing slash would double it.
    return value.rstrip("/")


def join(path: str, key: str) -> str:
    """The key path of ``key`` under ``path``: ``join("assignment", "salt")`` is ``assignment.salt``."""
    return f"{path}.{key}" if path else key


def show(value: object) -> str:
    """``repr(value)``, cut to a length that fits a message."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
