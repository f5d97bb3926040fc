"""The few conversions both backends share: values to JSON text, a stored row back to :class:`Labelled`.

The prediction, its scores, the segments and the label are stored as JSON
text, byte for byte what :func:`dumps` wrote, in both backends: the store
never looks inside them in SQL, and one decoder reads both databases back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from sidecar.records import PredictionRecord
from sidecar.store.values import Labelled

__all__ = ["confidence", "dumps", "labelled"]


def dumps(value: Any) -> str:
    """JSON text of a prediction, scores or segments."""
    # default=str: a value JSON cannot hold is stored as its text rather than failing the row.
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()


def confidence(record: PredictionRecord) -> float | None:
    """The record's confidence if it is a probability, else None.

    Its one use is the accuracy estimated from confidence, which takes only
    values in [0, 1] (:mod:`sidecar.performance.estimate`); storing the rest
    as NULL lets that be one indexed aggregate.
    """
    value = record.confidence
    if value is None:
        return None
    value = float(value)
    return value if 0.0 <= value <= 1.0 else None  # NaN fails both


def labelled(row: Sequence[Any]) -> Labelled:
    """A row of (request_id, row, ts, model, version, variant, prediction, scores, weight, segments, label,
    label_ts, labelled_at), JSON columns as text, as a :class:`Labelled`."""
    request_id, row_index, ts, model, version, variant, prediction, scores, weight, segments, label, label_ts, at = row
    loads = orjson.loads
    return Labelled(
        request_id,
        row_index,
        ts,
        model,
        version,
        variant,
        loads(prediction),
        None if scores is None else loads(scores),
        weight,
        {} if segments is None else loads(segments),
        loads(label),
        label_ts,
        at,
    )
