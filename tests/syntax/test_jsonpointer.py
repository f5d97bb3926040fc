"""RFC 6901 JSON Pointers: the examples of section 5, and the errors config relies on."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.protocols import parse_pointer
from sidecar.syntax.jsonpointer import resolve

# RFC 6901 §5
DOCUMENT: dict[str, Any] = {
    "foo": ["bar", "baz"],
    "": 0,
    "a/b": 1,
    "c%d": 2,
    "e^f": 3,
    "g|h": 4,
    "i\\j": 5,
    'k"l': 6,
    " ": 7,
    "m~n": 8,
}


@pytest.mark.parametrize(
    ("pointer", "expected"),
    [
        ("", DOCUMENT),
        ("/foo", ["bar", "baz"]),
        ("/foo/0", "bar"),
        ("/", 0),
        ("/a~1b", 1),
        ("/c%d", 2),
        ("/e^f", 3),
        ("/g|h", 4),
        ("/i\\j", 5),
        ('/k"l', 6),
        ("/ ", 7),
        ("/m~0n", 8),
    ],
)
def test_rfc6901_examples(pointer: str, expected: Any) -> None:
    assert resolve(DOCUMENT, parse_pointer(pointer)) == expected


def test_tokens_are_unescaped_in_order() -> None:
    # "~01" is "~1" unescaped, not "/".
    assert parse_pointer("/~01/a~1b~0c") == ("~1", "a/b~c")


@pytest.mark.parametrize(
    ("pointer", "message"),
    [
        ("foo", "must be empty or start with '/'"),
        ("/a~2b", "not followed by 0 or 1"),
        ("/trailing~", "not followed by 0 or 1"),
    ],
)
def test_bad_pointers_say_why(pointer: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_pointer(pointer)
    assert repr(pointer) in str(info.value)


@pytest.mark.parametrize(
    "pointer", ["/missing", "/foo/2", "/foo/-", "/foo/01", "/foo/x", "/foo/0/deeper", "/foo/" + "9" * 40]
)
def test_unresolvable_pointers_raise_lookup_error(pointer: str) -> None:
    with pytest.raises(LookupError):
        resolve(DOCUMENT, parse_pointer(pointer))
