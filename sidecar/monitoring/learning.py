"""Learn a reference profile from the first captured records, when none was given.

Without ``SIDECAR_REFERENCE_PATH`` the sidecar still needs bins to count
into. It keeps the first ``SIDECAR_REFERENCE_WARMUP`` records (PII already
removed), then builds a profile from them with the same builder as
``ml-sidecar profile build`` (same inference rules, same quantile edges), and
freezes it. Drift is then measured against the traffic the model first saw
after start-up, which is weaker than a training-data reference (the operator
is told so in ``/api/v1/drift``) but far better than nothing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from sidecar.profiling import BuildOptions, build_profile
from sidecar.records import PredictionRecord
from sidecar.reference import ReferenceProfile

__all__ = ["ReferenceLearner"]

# Column names for the model outputs in the warm-up table, chosen not to
# collide with a feature name.
_PREDICTION = "__sidecar_prediction__"
_CONFIDENCE = "__sidecar_confidence__"


class ReferenceLearner:
    """Collect warm-up records, then build a profile from them once.

    Usage::

        learner = ReferenceLearner(target=1000, bins=10)
        if learner.add(records):               # True once enough records are in
            profile = learner.build()          # CPU work: run it off the event loop
    """

    def __init__(self, *, target: int, bins: int) -> None:
        self.target = target
        self.bins = bins
        self._rows: list[dict[str, Any]] = []

    @property
    def seen(self) -> int:
        return len(self._rows)

    def add(self, records: Sequence[PredictionRecord]) -> bool:
        """Keep records until the target is reached; True when it is."""
        room = self.target - len(self._rows)
        for record in records[: max(room, 0)]:
            row = dict(record.features)
            row[_PREDICTION] = record.prediction
            row[_CONFIDENCE] = record.confidence
            self._rows.append(row)
        return len(self._rows) >= self.target

    def build(self) -> ReferenceProfile:
        """The profile of the warm-up records; the records are released afterwards."""
        with tempfile.TemporaryDirectory(prefix="ml-sidecar-warmup-") as directory:
            path = Path(directory) / "warmup.jsonl"
            path.write_bytes(b"\n".join(orjson.dumps(row) for row in self._rows))
            predictions = any(row[_PREDICTION] is not None for row in self._rows)
            confidences = any(row[_CONFIDENCE] is not None for row in self._rows)
            options = BuildOptions(
                format="jsonl",
                bins=self.bins,
                prediction=_PREDICTION if predictions else None,
                confidence=_CONFIDENCE if confidences else None,
                exclude=frozenset(
                    name for name, present in ((_PREDICTION, predictions), (_CONFIDENCE, confidences)) if not present
                ),
            )
            result = build_profile(path, options)
        self._rows = []
        profile = result.profile
        source = {**profile.source, "path": None, "learned_from": "warm-up traffic", "rows": result.rows}
        return ReferenceProfile(
            version="learned-" + profile.version,
            created_at=profile.created_at,
            features=profile.features,
            outputs=profile.outputs,
            target=profile.target,
            baseline=profile.baseline,
            source=source,
        )
