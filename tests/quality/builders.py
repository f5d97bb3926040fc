"""Small builders shared by the quality tests: a profile, records, a fake clock."""

from __future__ import annotations

from typing import Any

from sidecar.quality import QualityMonitor
from sidecar.records import PredictionRecord
from sidecar.reference import Distribution, ReferenceProfile, Stats
from tests.records import make_record

# age: numeric in [0, 100], no nulls      → range [-10, 110] at tolerance 0.1, non-negative
# income: numeric in [-500, 9500], nulls → range [-1500, 10500], negatives fine, nullable
# country: categorical DE/FR/US, no nulls
# plan: categorical basic/pro, nulls
CLEAN: dict[str, Any] = {"age": 40, "income": 1200.5, "country": "DE", "plan": "pro"}


def profile(version: str = "v1") -> ReferenceProfile:
    return ReferenceProfile(
        version=version,
        created_at="2026-11-26T08:00:00Z",
        features={
            "age": Distribution.numeric(
                edges=(30.0, 45.0), ratios=(0.3, 0.4, 0.3), stats=Stats(count=1000, min=0.0, max=100.0)
            ),
            "income": Distribution.numeric(
                edges=(1000.0,), ratios=(0.5, 0.5), stats=Stats(count=950, min=-500.0, max=9500.0, null_share=0.05)
            ),
            "country": Distribution.categorical(
                categories=("DE", "FR", "US"), ratios=(0.4, 0.3, 0.3, 0.0), stats=Stats(count=1000, cardinality=3)
            ),
            "plan": Distribution.categorical(
                categories=("basic", "pro"), ratios=(0.6, 0.4, 0.0), stats=Stats(count=900, null_share=0.1)
            ),
        },
    )


def record(
    features: dict[str, Any] | None = None,
    *,
    timestamp: float = 1000.0,
    request_id: str = "req-1",
    probability: float = 1.0,
) -> PredictionRecord:
    return make_record(
        timestamp=timestamp,
        request_id=request_id,
        features=dict(CLEAN) if features is None else features,
        probability=probability,
    )


class FakeClock:
    """A clock the test moves by hand, so nothing sleeps."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fired(monitor: QualityMonitor) -> dict[tuple[str, str], int]:
    """The non-zero feature-level counters (volume ones left out)."""
    return {pair: n for pair, n in monitor.counts().items() if n and pair[0] != "__all__"}
