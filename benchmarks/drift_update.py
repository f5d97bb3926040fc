"""What does drift monitoring cost? Microseconds per record to count, milliseconds per evaluation.

Two measurements, each the best and the median of several repeats, in CPU
time of this process (``time.process_time``), so that other work on the
machine does not inflate them:

- **update**: :meth:`DriftTracker.update` over batches of 64 records with 20
  features (15 numeric with 10 bins, 5 categorical with 9 categories and the
  unseen bucket) plus the ``prediction`` and ``confidence`` outputs, weights
  1/p with p = 0.5, and the slice rotating every 50 batches, so rotation is
  in the figure. For scale: whylogs' ``track(row)`` took about 296 µs for 20
  columns on another machine.
- **update_columns**: the same rows as a table of 20 columns, counted by
  :meth:`DriftTracker.update_columns` (the path of ``ml-sidecar profile
  check``), in µs per row.
- **evaluate**: :func:`evaluate` on 50 features × 10 bins (40 numeric, 10
  categorical) after traffic in every one of the window's 60 slices, so the
  ring sums and the distinct-value sets are full. Each drifted numeric
  feature's KS p-value costs O(N) for N the combined sample size
  (:mod:`sidecar.drift.ks`); here N is 7,500. The last figure is
  that cost at N = 100,000, a busy model with a large reference.

No figure here has a target: there is no baseline in this run to state one
as a ratio to (docs/architecture.md, "Performance targets"). The absolute
aims it once printed (20 µs per record, 50 ms per evaluation) were set on
another machine and are retired. Drift's speed target is
``benchmarks.drift_vs_evidently``'s ratio to Evidently, measured in one run.

Usage::

    python -m benchmarks.drift_update [--records 50000] [--repeat 5]

The helpers that build a reference profile and records from numpy columns are
shared with ``benchmarks.drift_vs_evidently``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from sidecar.drift import DriftTracker, evaluate
from sidecar.drift.ks import kstwo_sf
from sidecar.records import PredictionRecord
from sidecar.reference import Distribution, ReferenceProfile, Stats

__all__ = ["FakeClock", "make_columns", "make_profile", "make_records", "main"]

BATCH = 64  # the capture worker's batch
CATEGORIES = tuple("abcdefghi")
Column = npt.NDArray[np.float64] | npt.NDArray[np.str_]


class FakeClock:
    """A clock the benchmark moves by hand, so slices rotate when it says."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make_columns(
    rng: np.random.Generator, rows: int, *, numeric: int, categorical: int, shift: float = 0.0
) -> dict[str, Column]:
    """Numeric columns ``n0…`` from N(shift, 1), categorical ``c0…`` over nine letters, the first ones favoured."""
    columns: dict[str, Column] = {f"n{i}": rng.normal(shift, 1.0, rows) for i in range(numeric)}
    favour = np.arange(len(CATEGORIES), 0, -1, dtype=float)
    for i in range(categorical):
        columns[f"c{i}"] = rng.choice(np.array(CATEGORIES), size=rows, p=favour / favour.sum())
    return columns


def make_profile(reference: Mapping[str, Column], *, bins: int = 10) -> ReferenceProfile:
    """A profile with quantile bins, as the profile builder makes them, plus prediction and confidence outputs."""
    features = {name: _distribution(values, bins) for name, values in reference.items()}
    rows = len(next(iter(reference.values())))
    outputs = {
        "prediction": Distribution.categorical(
            categories=("yes", "no"), ratios=(0.3, 0.7, 0.0), stats=Stats(count=rows, cardinality=2)
        ),
        "confidence": Distribution.numeric(
            edges=(0.6, 0.7, 0.8, 0.9), ratios=(0.2,) * 5, stats=Stats(count=rows, mean=0.75, std=0.14)
        ),
    }
    return ReferenceProfile(version="bench", created_at="2026-11-26T00:00:00Z", features=features, outputs=outputs)


def _distribution(values: Column, bins: int) -> Distribution:
    if values.dtype.kind == "f":
        x = values.astype(np.float64)
        edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        # side="left" puts a value equal to an edge below it, as Distribution.bin_of does.
        counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1)
        stats = Stats(
            count=len(x),
            mean=float(x.mean()),
            std=float(x.std()),
            min=float(x.min()),
            max=float(x.max()),
            cardinality=len(np.unique(x)),
        )
        return Distribution.numeric(edges=edges.tolist(), ratios=(counts / len(x)).tolist(), stats=stats)
    categories, counts = np.unique(values, return_counts=True)
    ratios = [*(counts / len(values)).tolist(), 0.0]
    stats = Stats(count=len(values), cardinality=len(categories))
    return Distribution.categorical(categories=categories.tolist(), ratios=ratios, stats=stats)


def make_records(
    columns: Mapping[str, Column], rng: np.random.Generator, *, probability: float = 1.0
) -> list[PredictionRecord]:
    """One record per row, with Python values as a protocol adapter would parse them."""
    names = list(columns)
    rows = zip(*(columns[name].tolist() for name in names), strict=True)
    confidence = rng.uniform(0.5, 1.0, len(columns[names[0]])).tolist()
    return [
        PredictionRecord(
            timestamp=0.0,
            request_id=str(i),
            row=0,
            model_name="bench",
            model_version=None,
            variant="primary",
            features=dict(zip(names, row, strict=True)),
            prediction="yes" if c > 0.8 else "no",
            confidence=c,
            scores=None,
            latency_ms=1.0,
            status_code=200,
            strategy="random",
            probability=probability,
        )
        for i, (row, c) in enumerate(zip(rows, confidence, strict=True))
    ]


def bench_update(records: Sequence[PredictionRecord], profile: ReferenceProfile, repeat: int) -> list[float]:
    """µs per record of :meth:`DriftTracker.update`, one figure per repeat."""
    figures = []
    for _ in range(repeat):
        clock = FakeClock()
        tracker = DriftTracker(profile, clock=clock)
        start = time.process_time()
        for n, i in enumerate(range(0, len(records), BATCH)):
            if n % 50 == 49:
                clock.now += 60.0
            tracker.update(records[i : i + BATCH])
        figures.append((time.process_time() - start) / len(records) * 1e6)
    return figures


def bench_columns(columns: Mapping[str, Column], profile: ReferenceProfile, repeat: int) -> list[float]:
    """µs per row of :meth:`DriftTracker.update_columns` (a table, as ``profile check`` counts it), one per repeat."""
    rows = len(next(iter(columns.values())))
    figures = []
    for _ in range(repeat):
        tracker = DriftTracker(profile, clock=FakeClock())
        start = time.process_time()
        tracker.update_columns(rows, columns)  # numpy strings become Python strings in there, timed
        figures.append((time.process_time() - start) / rows * 1e6)
    return figures


def bench_evaluate(rng: np.random.Generator, repeat: int) -> list[float]:
    """ms per :func:`evaluate` of 50 features × 10 bins over a full window, one figure per repeat."""
    profile = make_profile(make_columns(rng, 20_000, numeric=40, categorical=10))
    records = make_records(make_columns(rng, 60 * 200, numeric=40, categorical=10, shift=0.2), rng)
    clock = FakeClock()
    tracker = DriftTracker(profile, clock=clock)
    for i in range(0, len(records), 200):  # 200 records in each of the 60 slices
        tracker.update(records[i : i + 200])
        clock.now += 60.0
    clock.now -= 60.0
    figures = []
    for _ in range(repeat):
        start = time.process_time()
        evaluate(tracker)
        figures.append((time.process_time() - start) * 1e3)
    return figures


def bench_ks_tail(repeat: int) -> list[float]:
    """ms per KS p-value of a drifted feature (D = 0.02) at N = 100,000."""
    figures = []
    for _ in range(repeat):
        start = time.process_time()
        kstwo_sf(0.02, 100_000)
        figures.append((time.process_time() - start) * 1e3)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift_update", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=50_000, help="records per update run (default 50000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each measurement (default 5)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(20261126)
    profile = make_profile(make_columns(rng, 20_000, numeric=15, categorical=5))
    current = make_columns(rng, args.records, numeric=15, categorical=5, shift=0.3)
    records = make_records(current, rng, probability=0.5)
    update = bench_update(records, profile, args.repeat)
    by_columns = bench_columns(current, profile, args.repeat)
    evaluation = bench_evaluate(rng, max(args.repeat, 10))
    tail = bench_ks_tail(max(args.repeat, 10))
    print(f"update, 20 features + 2 outputs: best {min(update):.2f} us/record, median {statistics.median(update):.2f}")
    print(
        f"update_columns, 20 features (a table): best {min(by_columns):.2f} us/row,"
        f" median {statistics.median(by_columns):.2f}"
    )
    print(
        f"evaluate, 50 features x 10 bins, full window: best {min(evaluation):.2f} ms,"
        f" median {statistics.median(evaluation):.2f}"
    )
    print(
        f"KS p-value of a drifted feature at N = 100,000: best {min(tail):.2f} ms, median {statistics.median(tail):.2f}"
    )
    print("(no target yet: no baseline runs here; drift_vs_evidently states drift's target as a ratio to Evidently)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
