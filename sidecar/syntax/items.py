"""The fields the admin API's POST bodies share: a request id, a row, a timestamp, and how a bad value is named.

``POST /api/v1/labels`` (:mod:`sidecar.labels.api`) and ``POST
/api/v1/outcomes`` (:mod:`sidecar.experiments.outcomes`) key their items the
same way, so a client reads one set of rules and one style of message. Each
reader appends a line to ``problems`` naming the item's path and what was
expected, and returns None, so that a body's every problem is listed at once.

>>> problems = []
>>> row("[2]", True, problems), problems
(None, ['[2].row: expected a non-negative integer (the row of a batch request), got a boolean'])
"""

from __future__ import annotations

import math
from typing import Any, Final

from sidecar.records import parse_rfc3339

__all__ = ["MAX_REQUEST_ID_LENGTH", "BodyError", "entries", "kind", "refuse", "request_id", "row", "timestamp"]

# More problems than this in one body are summarised: the first ones are enough to fix the client.
_MAX_PROBLEMS: Final = 20
# Request ids come from headers (x-request-id) or are generated UUIDs; a
# longer one cannot match a stored prediction and only costs memory.
MAX_REQUEST_ID_LENGTH: Final = 256


class BodyError(Exception):
    """The request is rejected whole: ``status`` (400, 413 or 422), a summary, and one line per problem."""

    def __init__(self, status: int, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []


def entries(document: Any, noun: str, max_items: int, error: type[BodyError]) -> list[tuple[str, Any]]:
    """A parsed body's items with their paths (``body``, or ``[i]`` in a list); ``error`` if it holds none or too many.

    ``noun`` names an item in the messages ("label": "the body holds 12 labels; ...").
    """
    if isinstance(document, dict):
        return [("body", document)]
    if not isinstance(document, list):
        article = "an" if noun[:1] in "aeiou" else "a"
        raise error(422, f"the body must be {article} {noun} object or a list of them, not {kind(document)}")
    if not document:
        raise error(422, f"the body is an empty list; send one {noun} object or a list of them")
    if len(document) > max_items:
        raise error(413, f"the body holds {len(document)} {noun}s; at most {max_items} per request")
    return [(f"[{i}]", raw) for i, raw in enumerate(document)]


def refuse(problems: list[str], noun: str, error: type[BodyError]) -> None:
    """Raise ``error`` (422) listing ``problems``, the first :data:`_MAX_PROBLEMS` of them, if there are any."""
    if not problems:
        return
    shown = problems[:_MAX_PROBLEMS]
    if len(problems) > _MAX_PROBLEMS:
        shown.append(f"... and {len(problems) - _MAX_PROBLEMS} more problems")
    raise error(422, f"{len(problems)} problem(s) in the {noun}s; nothing was stored", shown)


def request_id(path: str, value: Any, problems: list[str]) -> str | None:
    """A non-empty string of at most :data:`MAX_REQUEST_ID_LENGTH` characters."""
    if not isinstance(value, str) or not value:
        problems.append(f"{path}.request_id: required, a non-empty string; got {kind(value)}")
        return None
    if len(value) > MAX_REQUEST_ID_LENGTH:
        problems.append(f"{path}.request_id: longer than {MAX_REQUEST_ID_LENGTH} characters")
        return None
    return value


def row(path: str, value: Any, problems: list[str]) -> int | None:
    """None (row 0 of a single-row request), or the row of a batch request."""
    # bool is an int subclass, and true must not quietly mean row 1.
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    problems.append(f"{path}.row: expected a non-negative integer (the row of a batch request), got {kind(value)}")
    return None


def timestamp(path: str, value: Any, problems: list[str]) -> float | None:
    """When the label's or outcome's event happened: Unix seconds, or an RFC 3339 time with a zone."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and value >= 0:
            return float(value)
    elif isinstance(value, str):
        try:
            return parse_rfc3339(value)
        except ValueError:
            pass
    problems.append(
        f"{path}.timestamp: expected Unix seconds or an RFC 3339 time with a zone "
        f"(e.g. 2026-11-26T08:00:00Z), got {kind(value)}"
    )
    return None


def kind(value: Any) -> str:
    """A JSON value as a message names it: ``null``, ``a boolean``, ``the number 3``, ``the string 'x'``, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    return "an object"
