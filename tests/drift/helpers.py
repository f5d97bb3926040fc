"""Build reference distributions, profiles and records for the drift tests, straight from numpy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sidecar.records import PredictionRecord
from sidecar.reference import Distribution, ReferenceProfile, Stats
from tests.records import make_record

Floats = npt.NDArray[np.float64]


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def numeric(reference: Floats, bins: int = 10) -> Distribution:
    """Bins at the reference quantiles, as the profile builder makes them."""
    edges = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return numeric_with_edges(reference, edges)


def numeric_with_edges(reference: Floats, edges: Floats) -> Distribution:
    # side="left": a value equal to an edge belongs to the bin below it, as in Distribution.bin_of.
    counts = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=len(edges) + 1)
    stats = Stats(
        count=len(reference),
        mean=float(reference.mean()),
        std=float(reference.std()),
        min=float(reference.min()),
        max=float(reference.max()),
        cardinality=len(np.unique(reference)),
    )
    return Distribution.numeric(edges=edges.tolist(), ratios=(counts / len(reference)).tolist(), stats=stats)


def categorical(categories: Sequence[str], shares: Sequence[float], count: int) -> Distribution:
    """Reference shares of the categories; the unseen bucket gets what is left."""
    rest = max(0.0, 1.0 - sum(shares))
    return Distribution.categorical(
        categories=categories, ratios=[*shares, rest], stats=Stats(count=count, cardinality=len(categories))
    )


def profile(
    features: Mapping[str, Distribution],
    *,
    outputs: Mapping[str, Distribution] | None = None,
    target: Distribution | None = None,
) -> ReferenceProfile:
    return ReferenceProfile(
        version="test", created_at="2026-11-26T00:00:00Z", features=features, outputs=outputs or {}, target=target
    )


def record(
    features: dict[str, Any], *, probability: float = 1.0, prediction: Any = None, confidence: float | None = None
) -> PredictionRecord:
    return make_record(
        model_name="m", features=features, prediction=prediction, confidence=confidence, probability=probability
    )


def records(columns: Mapping[str, Sequence[Any]], *, probability: float = 1.0) -> list[PredictionRecord]:
    """One record per row of equally long columns."""
    names = list(columns)
    rows = zip(*(columns[name] for name in names), strict=True)
    return [record(dict(zip(names, row, strict=True)), probability=probability) for row in rows]
