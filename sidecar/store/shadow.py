"""A shadow experiment's side of the store: the challenger's predictions, and their pairs with control's.

Nothing here speaks SQL: both backends keep and pair the challenger's rows
by these rules, and return the pairs in these values.

**The challenger's predictions** (table ``shadow_predictions``) are keyed
like control's, by request id and row, with the experiment: one per
(experiment, request id, row), the first kept (a client reusing a request id
pairs with the first prediction, as its labels join it). Each keeps the
challenger's variant, its prediction, scores and confidence (in [0, 1], else
none), and control's prediction time (``ts``): the row lives as long as the
predictions of its time, so eviction, by TTL or by ``max_rows``, takes both,
and the table never holds more rows than the predictions table plus the
pairs whose prediction was never written.

**Pairs** are made when the analysis reads them (:class:`ShadowPairs`): a
challenger's row joins control's prediction of the same request id and row,
made in the window, in control's variant. A label posted later, on any
replica sharing the store, joins control's prediction as always, and so
labels the pair: the challenger's prediction is judged on the very request
control's is.

Usage::

    pairs = await store.shadow_pairs("ranker-v2-shadow", control="control", since=start, model="iris")
    pairs.control_rows, len(pairs), int(pairs.labelled.sum())
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

__all__ = ["ShadowPairs", "collect_pairs"]

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ShadowPairs:
    """Control's and the challenger's predictions of the same rows, in a window, with control's label if any.

    ``control_rows`` counts control's predictions in the window, paired or
    not (the pairing rate's denominator). The lists and arrays have one entry
    per pair: the predictions and scores as JSON decoded, the confidences
    NaN where there is none, the label None and ``labelled`` False where
    there is none yet.

    Usage::

        pairs.control[i], pairs.challenger[i], pairs.label[i] if pairs.labelled[i] else None
    """

    control_rows: int
    control: list[Any]
    control_scores: list[list[float] | None]
    control_confidence: Floats
    challenger: list[Any]
    challenger_scores: list[list[float] | None]
    challenger_confidence: Floats
    label: list[Any]
    labelled: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.control)


def collect_pairs(control_rows: int, rows: Iterable[Sequence[Any]]) -> ShadowPairs:
    """A backend's pair rows, (control's prediction, scores, confidence, the challenger's prediction, scores,
    confidence, label), JSON columns as text and absent values as None, as :class:`ShadowPairs`."""
    control: list[Any] = []
    control_scores: list[list[float] | None] = []
    control_confidence: list[float] = []
    challenger: list[Any] = []
    challenger_scores: list[list[float] | None] = []
    challenger_confidence: list[float] = []
    label: list[Any] = []
    labelled: list[bool] = []
    loads = orjson.loads
    for prediction, scores, confidence, other, other_scores, other_confidence, truth in rows:
        control.append(loads(prediction))
        control_scores.append(None if scores is None else loads(scores))
        control_confidence.append(math.nan if confidence is None else confidence)
        challenger.append(loads(other))
        challenger_scores.append(None if other_scores is None else loads(other_scores))
        challenger_confidence.append(math.nan if other_confidence is None else other_confidence)
        label.append(None if truth is None else loads(truth))
        labelled.append(truth is not None)
    return ShadowPairs(
        control_rows,
        control,
        control_scores,
        np.array(control_confidence, dtype=np.float64),
        challenger,
        challenger_scores,
        np.array(challenger_confidence, dtype=np.float64),
        label,
        np.array(labelled, dtype=np.bool_),
    )
