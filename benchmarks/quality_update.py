"""What does a quality check cost per record? ``QualityMonitor.observe`` on 20 features.

The profile has 10 numeric and 10 categorical features. Three streams: clean
records, records with one bad value each, and records where every feature is
bad (the worst case: 20 counter increments and examples per record).

Two batch sizes: 64 records, what the capture worker hands over when traffic
keeps it busy (it takes up to 64 exchanges from the queue per call; here one
row each), which is when every microsecond counts; and 1, what it hands over
for a lone single-row request. A full batch is screened column by column
(:class:`sidecar.quality.screen.Screen`); fewer than ``SCREEN_MIN`` records
are checked one by one.

Figures are CPU time of this process (``time.process_time``), so that other
work on the machine does not inflate them: the median and the best of
``--repeat`` measurements of ``--number`` records each.

Usage::

    python -m benchmarks.quality_update --number 20000 --repeat 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from sidecar.quality import QualityMonitor
from sidecar.records import PredictionRecord
from sidecar.reference import Distribution, ReferenceProfile, Stats

CATEGORIES = tuple(f"c{i}" for i in range(20))


def build_profile() -> ReferenceProfile:
    features: dict[str, Distribution] = {}
    for i in range(10):
        features[f"num{i}"] = Distribution.numeric(
            edges=tuple(float(e) for e in range(10, 100, 10)),
            ratios=(0.1,) * 10,
            stats=Stats(count=1000, min=0.0, max=100.0),
        )
        features[f"cat{i}"] = Distribution.categorical(
            categories=CATEGORIES, ratios=(1 / 21,) * 21, stats=Stats(count=1000, cardinality=20)
        )
    return ReferenceProfile(version="bench", created_at="2026-01-01T00:00:00Z", features=features)


def make_record(rng: random.Random, bad: int) -> PredictionRecord:
    features: dict[str, Any] = {}
    for i in range(10):
        features[f"num{i}"] = rng.uniform(0.0, 100.0)
        features[f"cat{i}"] = rng.choice(CATEGORIES)
    for name in list(features)[:bad]:
        features[name] = "??" if name.startswith("num") else "unseen"
    return PredictionRecord(
        timestamp=0.0,
        request_id="bench",
        row=0,
        model_name="bench",
        model_version=None,
        variant="primary",
        features=features,
        prediction=None,
        confidence=None,
        scores=None,
        latency_ms=1.0,
        status_code=200,
        strategy="random",
        probability=1.0,
    )


def measure(bad: int, batch: int, number: int) -> float:
    """Microseconds of CPU time per record."""
    rng = random.Random(7)
    monitor = QualityMonitor(build_profile(), clock=lambda: 0.0)
    batches = [[make_record(rng, bad) for _ in range(batch)] for _ in range(256)]
    calls = max(1, number // batch)
    todo = (batches * (calls // len(batches) + 1))[:calls]
    observe = monitor.observe
    start = time.process_time()
    for records in todo:
        observe(records)
    return (time.process_time() - start) / (calls * batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="records per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="measurements per figure")
    args = parser.parse_args()
    for label, bad in (("clean", 0), ("one bad value", 1), ("all 20 bad", 20)):
        for batch in (64, 1):
            runs = [measure(bad, batch, args.number) for _ in range(args.repeat)]
            print(
                f"{label:>14}, batch {batch:>2}: median {statistics.median(runs):6.2f}, "
                f"best {min(runs):6.2f} µs/record (CPU)"
            )


if __name__ == "__main__":
    main()
