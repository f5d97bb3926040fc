"""Rows: turning a batch into per-row feature dicts, and pairing them with outputs.

Feature names follow one rule everywhere: a named input keeps its name; a
positional one (an element of a list instance, a column of a single tensor)
takes ``AdapterOptions.feature_names[i]``, or ``f<i>`` past the end of that list.

Pairing: the request defines the rows. Row ``i`` gets output ``i``. When the
response has fewer outputs the remaining rows have no prediction; when it has
more, the surplus is dropped, because an output without its features cannot be
checked against anything and must not be counted as a request.
"""

from __future__ import annotations

from typing import Any

from sidecar.protocols.base import AdapterOptions
from sidecar.protocols.predictions import interpret
from sidecar.records import Row

__all__ = ["features_of", "unwrap_b64", "columns_to_rows", "batch_of", "pair"]


def unwrap_b64(value: Any) -> Any:
    """TensorFlow Serving's ``{"b64": "..."}`` binary value as its base64 text.

    The text is kept, not decoded: a log line must stay JSON, and binary inputs
    (images, serialised examples) are monitored by presence and size, not bytes.
    """
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str):
        return value["b64"]
    return value


def features_of(instance: Any, options: AdapterOptions) -> dict[str, Any]:
    """One row's features: an object by name, a list by position, a scalar as the first position."""
    # A list first: it is the common row, and unwrap_b64 leaves a list as it is.
    if isinstance(instance, list):
        # Only a dict can be a {"b64": ...} value: most rows are plain numbers and need no unwrapping.
        if dict not in map(type, instance):
            # The names have the row's width, so no strict check: zip's keyword alone costs a third of the call.
            return dict(zip(options.positional_names(len(instance)), instance))  # noqa: B905
        return {options.feature_name(i): unwrap_b64(value) for i, value in enumerate(instance)}
    instance = unwrap_b64(instance)
    if isinstance(instance, dict):
        return {key: unwrap_b64(value) for key, value in instance.items()}
    return {options.feature_name(0): instance}


def columns_to_rows(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Columnar ``{name: [v0, v1, ...]}`` as rows ``[{name: v0}, {name: v1}, ...]``.

    The batch size is the length of the first list-valued member; a member that
    is not a list of that length is repeated on every row (TensorFlow Serving
    lets a columnar input skip the batch dimension).
    """
    size = next((len(v) for v in columns.values() if isinstance(v, list)), None)
    if size is None:
        return [dict(columns)]
    split = {key: isinstance(value, list) and len(value) == size for key, value in columns.items()}
    return [{key: value[i] if split[key] else value for key, value in columns.items()} for i in range(size)]


def batch_of(value: Any) -> list[Any]:
    """Per-row values of a response member: a list is the batch, an object is columnar, else one row."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return columns_to_rows(value)
    return [value]


def pair(features: list[dict[str, Any]], outputs: list[Any] | None, *, regression: bool = False) -> list[Row]:
    """Rows from the request's features and the response's per-row outputs (see module docstring).

    ``regression`` (``SIDECAR_TASK=regression``): a number output is the predicted value, never P(positive).
    """
    if outputs is None:
        return [Row(row_features) for row_features in features]
    rows: list[Row] = []
    # zip stops at the shorter list: the surplus outputs are dropped, and rows past the outputs are added after.
    # No strict= keyword: it sends zip's call down a slow path that costs as much as the loop.
    for row_features, output in zip(features, outputs):  # noqa: B905
        outcome = interpret(output, regression=regression)
        rows.append(Row(row_features, outcome.prediction, outcome.confidence, outcome.scores))
    if len(features) > len(outputs):
        rows += [Row(row_features) for row_features in features[len(outputs) :]]
    return rows
