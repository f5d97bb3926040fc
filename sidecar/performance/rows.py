"""The input of performance computation: a prediction, and its label once one has arrived."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.records import PredictionRecord

__all__ = ["JoinedRow"]


@dataclass(frozen=True, slots=True)
class JoinedRow:
    """One stored prediction joined with its delayed label (``label`` None: not labelled yet).

    ``weight`` is the record's Horvitz-Thompson weight 1/p, so every metric is
    the one of the traffic the sample stands for. Unlabelled rows still count:
    the estimated accuracy reads the confidence of every prediction.

    Usage::

        row = JoinedRow.from_record(record, label="cat")
        row = JoinedRow("churn", "champion", prediction=1, scores=[0.2, 0.8], confidence=0.8, label=0, weight=4.0)
    """

    model: str
    variant: str
    prediction: Any
    scores: Sequence[float] | None
    confidence: float | None
    label: Any = None
    weight: float = 1.0

    @classmethod
    def from_record(cls, record: PredictionRecord, label: Any = None) -> JoinedRow:
        return cls(
            model=record.model_name,
            variant=record.variant,
            prediction=record.prediction,
            scores=record.scores,
            confidence=record.confidence,
            label=label,
            weight=record.weight,
        )
