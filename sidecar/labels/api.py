"""The body of ``POST /api/v1/labels``: parsed and checked before anything is stored.

Two levels of error, so a client knows whether to fix its request or its data:

- **the request as a whole** (:class:`LabelRequestError`): malformed JSON is
  400; a body of the wrong shape, a field of the wrong type, a missing
  ``request_id`` or ``label``, or an unknown field is 422; more than
  ``max_items`` items is 413. Every problem is listed, each naming the field
  (``[3].row: expected a non-negative integer``), and nothing of the request
  is stored, so the client can fix it and send it again whole.
- **one item** (an ``invalid`` outcome in the response): the envelope is
  right but the label is not one the task accepts, e.g. a string for a
  regression model or a class outside ``SIDECAR_CLASSES``. The other items of
  the batch are still joined: a late label that one bad row held back might
  never be sent again.

Nothing here knows HTTP beyond the status codes it suggests.

Usage::

    try:
        items = parse_labels(body, max_items=10_000)
    except LabelRequestError as exc:
        return exc.status, {"error": exc.message, "problems": exc.problems}
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.store import LabelItem
from sidecar.syntax import items as fields
from sidecar.syntax.items import MAX_REQUEST_ID_LENGTH

__all__ = ["MAX_ITEMS", "MAX_REQUEST_ID_LENGTH", "LabelRequestError", "parse_labels"]

MAX_ITEMS = 10_000
_FIELDS = frozenset({"request_id", "row", "label", "timestamp"})


class LabelRequestError(fields.BodyError):
    """The request is rejected whole: ``status`` (400, 413 or 422), a summary, and one line per problem."""


def parse_labels(body: bytes, *, max_items: int = MAX_ITEMS) -> list[LabelItem]:
    """The label items of a request body, in order; :class:`LabelRequestError` if it cannot be used."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise LabelRequestError(400, f"the body is not valid JSON: {exc}") from None
    items: list[LabelItem] = []
    problems: list[str] = []
    for path, raw in fields.entries(document, "label", max_items, LabelRequestError):
        item = _item(path, raw, problems)
        if item is not None:
            items.append(item)
    fields.refuse(problems, "label", LabelRequestError)
    return items


def _item(path: str, raw: Any, problems: list[str]) -> LabelItem | None:
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected a label object, not {fields.kind(raw)}")
        return None
    before = len(problems)
    expected = ", ".join(sorted(_FIELDS))
    problems.extend(f"{path}.{key}: unknown field; expected {expected}" for key in sorted(raw.keys() - _FIELDS))
    request_id = fields.request_id(path, raw.get("request_id"), problems)
    row = fields.row(path, raw.get("row"), problems)
    if raw.get("label") is None:
        problems.append(f"{path}.label: required, and must not be null")
    timestamp = fields.timestamp(path, raw.get("timestamp"), problems)
    if len(problems) > before or request_id is None:
        return None
    return LabelItem(request_id, row, raw["label"], timestamp)
