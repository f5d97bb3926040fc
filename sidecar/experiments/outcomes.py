"""The body of ``POST /api/v1/outcomes``: business outcomes, parsed and checked before anything is stored.

An outcome is one value of one of the experiment's outcome metrics (``source:
outcome`` in the definition), for one request or for one assignment unit::

    {"request_id": "0190f3c2a1b2c3d4e5f6a7b8c9d0e1f2", "metric": "revenue", "value": 12.5}
    {"request_id": "0190f3c2...", "row": 3, "metric": "conversion", "value": true}
    {"unit": "u-17", "metric": "conversion", "value": 1, "timestamp": "2026-11-26T08:00:00Z"}

The body is one such object or a list of them. The fields:

==============  ===========================================================================
``request_id``  the ``X-Request-Id`` of the prediction it follows (non-empty, at most 256
                characters); with ``row``, a non-negative integer, for one row of a batch
``unit``        or the assignment unit: the key's value, a string or an integer (``17``
                and ``"17"`` are one unit, see :func:`~.units.unit_text`)
``metric``      the name of an outcome metric of the experiment
``value``       a number; a ``proportion`` metric takes 0 or 1 (or false or true)
``timestamp``   optional: when it happened, Unix seconds or RFC 3339 with a zone
==============  ===========================================================================

Exactly one of ``request_id`` and ``unit``. Errors are the labels endpoint's
(:mod:`sidecar.labels.api`): malformed JSON is 400; more than ``max_items``
items is 413; any other problem is 422, the request is rejected whole and
nothing of it is stored, with one line per problem naming the item and the
field (``[3].value: ...``). Unlike a label, an outcome that does not fit its
metric rejects the whole request rather than only itself: which items fit
depends on their values (a 0.5 posted for a proportion), so storing the
others would bias that metric's per-arm mean without a trace.

Nothing here knows HTTP beyond the status codes it suggests, nor the store.

Usage::

    try:
        items = parse_outcomes(body, experiment, max_items=10_000)
    except OutcomeRequestError as exc:
        return exc.status, {"error": exc.message, "problems": exc.problems}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import orjson

from sidecar.experiments.definition import Experiment, Kind
from sidecar.experiments.units import unit_text
from sidecar.syntax import items as fields
from sidecar.syntax.items import MAX_REQUEST_ID_LENGTH

__all__ = ["MAX_ITEMS", "MAX_KEY_LENGTH", "OutcomeItem", "OutcomeRequestError", "parse_outcomes"]

MAX_ITEMS: Final = 10_000
# Request ids and units come from headers or payloads; a longer one cannot match a stored
# prediction and only costs memory. The labels endpoint bounds request ids the same way.
MAX_KEY_LENGTH: Final = MAX_REQUEST_ID_LENGTH
_FIELDS: Final = frozenset({"request_id", "row", "unit", "metric", "value", "timestamp"})
# More problems than this in one body are summarised: the first ones are enough to fix the client.


class OutcomeItem(NamedTuple):
    """One business outcome, checked against the experiment: by request (``request_id``, ``row``) or by ``unit``.

    ``row`` None is row 0 of a single-row request; it is always None for a
    unit. ``value`` is a float (0.0 or 1.0 for a proportion). ``timestamp`` is
    when it happened, Unix seconds, if the caller said.

    Usage::

        OutcomeItem("conversion", 1.0, request_id=None, row=None, unit="u-17")
        OutcomeItem("revenue", 12.5, request_id="req-2", row=3, unit=None, timestamp=1764144000.0)
    """

    metric: str
    value: float
    request_id: str | None
    row: int | None
    unit: str | None
    timestamp: float | None = None


class OutcomeRequestError(fields.BodyError):
    """The request is rejected whole: ``status`` (400, 413 or 422), a summary, and one line per problem."""


def parse_outcomes(body: bytes, experiment: Experiment, *, max_items: int = MAX_ITEMS) -> list[OutcomeItem]:
    """The outcome items of a request body, in order; :class:`OutcomeRequestError` if it cannot be used."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OutcomeRequestError(400, f"the body is not valid JSON: {exc}") from None
    pairs = fields.entries(document, "outcome", max_items, OutcomeRequestError)
    kinds = {m.name: m.kind for m in experiment.metrics.tested if m.source == "outcome"}
    if not kinds:
        raise OutcomeRequestError(
            422,
            f"experiment {experiment.name!r} has no outcome metrics (source: outcome); its metrics come from labels",
        )

    items: list[OutcomeItem] = []
    problems: list[str] = []
    for path, raw in pairs:
        item = _item(path, raw, experiment.name, kinds, problems)
        if item is not None:
            items.append(item)
    fields.refuse(problems, "outcome", OutcomeRequestError)
    return items


def _item(path: str, raw: Any, experiment: str, kinds: Mapping[str, Kind], problems: list[str]) -> OutcomeItem | None:
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected an outcome object, not {fields.kind(raw)}")
        return None
    before = len(problems)
    expected = ", ".join(sorted(_FIELDS))
    problems.extend(f"{path}.{key}: unknown field; expected {expected}" for key in sorted(raw.keys() - _FIELDS))
    request_id, row, unit = _key(path, raw, problems)
    metric = _metric(path, raw.get("metric"), experiment, kinds, problems)
    value = None if metric is None else _value(path, raw.get("value"), metric, kinds[metric], problems)
    timestamp = fields.timestamp(path, raw.get("timestamp"), problems)
    if len(problems) > before or metric is None or value is None:
        return None
    return OutcomeItem(metric, value, request_id, row, unit, timestamp)


def _key(path: str, raw: Mapping[str, Any], problems: list[str]) -> tuple[str | None, int | None, str | None]:
    """``(request_id, row, unit)``: exactly one of ``request_id`` and ``unit``, and ``row`` only with the first."""
    has_id, has_unit = raw.get("request_id") is not None, raw.get("unit") is not None
    if has_id and has_unit:
        problems.append(f"{path}: has both request_id and unit; give one, the key the outcome follows")
        return None, None, None
    if not has_id and not has_unit:
        problems.append(f"{path}: needs request_id (with an optional row) or unit; got neither")
        return None, None, None
    if has_unit:
        if raw.get("row") is not None:
            problems.append(f"{path}.row: only with request_id (a row of a batch request); a unit has no rows")
        return None, None, _unit(path, raw["unit"], problems)
    return fields.request_id(path, raw["request_id"], problems), fields.row(path, raw.get("row"), problems), None


def _unit(path: str, value: Any, problems: list[str]) -> str | None:
    # Strings and integers only: a float unit would be a rounding away from another unit.
    text = unit_text(value) if isinstance(value, str | int) else None
    if text is None:
        problems.append(
            f"{path}.unit: expected the assignment key's value, a non-empty string or an integer;"
            f" got {fields.kind(value)}"
        )
        return None
    if len(text) > MAX_KEY_LENGTH:
        problems.append(f"{path}.unit: longer than {MAX_KEY_LENGTH} characters")
        return None
    return text


def _metric(path: str, value: Any, experiment: str, kinds: Mapping[str, Kind], problems: list[str]) -> str | None:
    expected = ", ".join(kinds)
    if not isinstance(value, str):
        problems.append(
            f"{path}.metric: required, the name of an outcome metric ({expected}); got {fields.kind(value)}"
        )
        return None
    if value not in kinds:
        problems.append(
            f"{path}.metric: {value[:40]!r} is not an outcome metric of experiment {experiment!r}; expected one of:"
            f" {expected}"
        )
        return None
    return value


def _value(path: str, value: Any, metric: str, kind: Kind, problems: list[str]) -> float | None:
    if kind == "proportion":
        # true and false are 1 and 0 here: a conversion is naturally a boolean.
        if isinstance(value, bool):
            return float(value)
        if isinstance(value, int | float) and value in (0, 1):
            return float(value)
        problems.append(
            f"{path}.value: {metric} is a proportion: expected 0, 1, false or true; got {fields.kind(value)}"
        )
        return None
    # orjson refuses NaN and infinities, so any number here is finite.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    problems.append(f"{path}.value: {metric} is a mean: expected a number; got {fields.kind(value)}")
    return None
