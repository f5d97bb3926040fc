"""JSON Pointer (RFC 6901): parse once at start-up, resolve per body.

A pointer is ``""`` (the whole document) or a sequence of ``/``-prefixed
reference tokens, in which ``~1`` stands for ``/`` and ``~0`` for ``~``::

    parse_pointer("/outputs/0/data")   # ("outputs", "0", "data")
    parse_pointer("/a~1b/m~0n")        # ("a/b", "m~n")

An array index is ``0`` or a decimal number without a leading zero; ``-``
(the element after the last) never resolves, because a reader has nothing there.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["parse_pointer", "resolve"]

_BAD_ESCAPE = re.compile(r"~(?![01])")
_INDEX = re.compile(r"0|[1-9][0-9]*")


def parse_pointer(text: str) -> tuple[str, ...]:
    """Split an RFC 6901 pointer into unescaped reference tokens.

    Raises ``ValueError`` with a message a person can act on.
    """
    if text == "":
        return ()
    if not text.startswith("/"):
        raise ValueError(f"JSON pointer {text!r} must be empty or start with '/', e.g. /instances")
    if _BAD_ESCAPE.search(text):
        raise ValueError(f"JSON pointer {text!r} has a '~' not followed by 0 or 1 (write ~0 for '~', ~1 for '/')")
    # Order matters (RFC 6901 §4): ~1 first, so that "~01" becomes "~1", not "/".
    return tuple(token.replace("~1", "/").replace("~0", "~") for token in text[1:].split("/"))


def resolve(document: Any, tokens: tuple[str, ...]) -> Any:
    """The value ``tokens`` points at in ``document``.

    Raises ``LookupError`` naming the first token that does not resolve.
    """
    value = document
    for depth, token in enumerate(tokens):
        if isinstance(value, dict):
            if token not in value:
                raise LookupError(f"no member {token!r} at {_render(tokens[:depth])!r}")
            value = value[token]
        elif isinstance(value, list):
            if not _INDEX.fullmatch(token) or len(token) > 18 or int(token) >= len(value):
                raise LookupError(f"no element {token!r} at {_render(tokens[:depth])!r}")
            value = value[int(token)]
        else:
            raise LookupError(f"{_render(tokens[:depth])!r} is neither an object nor an array")
    return value


def _render(tokens: tuple[str, ...]) -> str:
    return "".join("/" + token.replace("~", "~0").replace("/", "~1") for token in tokens)
