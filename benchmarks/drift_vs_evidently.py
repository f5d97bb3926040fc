"""Ours against Evidently's batch data-drift report, on the same data: 100k rows × 20 columns each side.

Two comparisons: the verdicts, column by column, side by side, with the
number of columns the two tools agree on (drift or not; the sidecar's
"moderate" is not drift); and the speed, whose target is a ratio.

Evidently is an optional extra for this script only, never a dependency of
the sidecar. Evidently 0.7 needs pandas < 3, so install it into a venv of its
own, with the sidecar::

    python3 -m venv /tmp/evenv
    /tmp/evenv/bin/pip install 'evidently==0.7.*' 'pandas<3' numpy scipy
    /tmp/evenv/bin/pip install -e .
    /tmp/evenv/bin/python -m benchmarks.drift_vs_evidently

Without Evidently the script says so and exits 0.

The data: a reference and a current table, 15 numeric columns (the current
shifted by 0.3 standard deviations) and 5 categorical ones. Timed, in CPU
seconds of this process (and wall seconds alongside):

- **Evidently**: ``Dataset.from_pandas`` for both tables and
  ``Report([DataDriftPreset()]).run(current, reference)``;
- **ours, batch** (the target's figure): the same columns counted into the
  drift windows by :meth:`DriftTracker.update_columns`, the path of
  ``ml-sidecar profile check``, plus one :func:`evaluate`. Evidently gets
  the table as columns and so does this; the categorical columns' conversion
  from numpy strings to Python strings is timed with it.
- **ours, live**: :meth:`DriftTracker.update` on the 100k current rows as
  per-record feature dicts in batches of 64, as the capture worker feeds them
  from live traffic, plus one :func:`evaluate`. Most of its time is reading
  2M values out of 100k dicts, which the batch path never has to do.

The verdicts: Evidently's ``ValueDrift`` per column (normed Wasserstein for a
numeric column, Jensen–Shannon for a categorical one, drift at 0.1) against
the sidecar's batch snapshot under its default, combined rule (real by the
Holm-corrected KS or chi-square p-value, material by the same two effect
sizes computed from the bins, or PSI > 0.2).

Building the reference profile (quantile bins, once per model version,
offline) is shown apart, and so is the evaluation alone: Evidently recomputes
everything from the rows on every report, whereas the sidecar counts rows as
they come and then evaluates in O(bins).

Not timed for either: making the tables, and turning rows into records (the
sidecar's protocol adapters do that on capture).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from benchmarks.drift_update import BATCH, Column, FakeClock, make_columns, make_profile, make_records
from sidecar.drift import DriftSnapshot, DriftTracker, evaluate

__all__ = ["main"]

ROWS = 100_000
# The target, a ratio to Evidently measured in the same run (docs/architecture.md,
# "Performance targets"): the batch path at least 100x faster in CPU time.
MIN_RATIO = 100.0
INSTALL = """\
Evidently is not installed: this benchmark needs it as an extra, in a venv of its own (Evidently 0.7 needs pandas < 3):
    python3 -m venv /tmp/evenv
    /tmp/evenv/bin/pip install 'evidently==0.7.*' 'pandas<3' numpy scipy
    /tmp/evenv/bin/pip install -e .
    /tmp/evenv/bin/python -m benchmarks.drift_vs_evidently"""

T = TypeVar("T")


def timed(work: Callable[[], T]) -> tuple[T, float, float]:
    """``(result, CPU seconds, wall seconds)``."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    return result, time.process_time() - cpu, time.perf_counter() - wall


@dataclass(frozen=True)
class ColumnVerdict:
    """Evidently's verdict on one column: its method, the value and whether it calls the column drifted."""

    method: str
    value: float
    drifted: bool


def run_evidently(
    reference: Mapping[str, Column], current: Mapping[str, Column]
) -> tuple[dict[str, ColumnVerdict], float, float]:
    """Evidently's DataDriftPreset report: its verdict per column, and the times."""
    import pandas as pd  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from evidently import DataDefinition, Dataset, Report  # type: ignore[import-not-found,unused-ignore]
    from evidently.presets import DataDriftPreset  # type: ignore[import-not-found,unused-ignore]

    definition = DataDefinition(
        numerical_columns=[c for c in reference if c.startswith("n")],
        categorical_columns=[c for c in reference if c.startswith("c")],
    )
    reference_frame, current_frame = pd.DataFrame(dict(reference)), pd.DataFrame(dict(current))

    def report() -> Any:
        return Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current_frame, data_definition=definition),
            Dataset.from_pandas(reference_frame, data_definition=definition),
        )

    snapshot, cpu, wall = timed(report)
    verdicts: dict[str, ColumnVerdict] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config") or {}
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        method, value, threshold = str(config["method"]), float(metric["value"]), float(config["threshold"])
        # A p-value drifts below its threshold, a distance at or above it (Evidently's own comparisons).
        drifted = value < threshold if "p_value" in method else value >= threshold
        verdicts[str(config["column"])] = ColumnVerdict(method, value, drifted)
    return verdicts, cpu, wall


def run_ours(
    reference: Mapping[str, Column], current: Mapping[str, Column], rng: np.random.Generator
) -> tuple[DriftSnapshot, DriftSnapshot, dict[str, tuple[float, float]]]:
    """The sidecar's snapshots (live, batch) and times: profile build; updates plus one evaluation; that evaluation."""
    timings: dict[str, tuple[float, float]] = {}
    profile, *build = timed(lambda: make_profile(reference))
    timings["profile build"] = (build[0], build[1])
    records = make_records(current, rng)
    clock = FakeClock()

    def stream() -> DriftSnapshot:
        tracker = DriftTracker(profile, window_seconds=3600, slice_seconds=60, clock=clock)
        for n, i in enumerate(range(0, len(records), BATCH)):
            if n % 25 == 24:
                clock.now += 1.0  # 100k records over about 26 minutes: slices rotate
            tracker.update(records[i : i + BATCH])
        snapshot, *evaluation = timed(lambda: evaluate(tracker))
        timings["evaluate alone"] = (evaluation[0], evaluation[1])
        return snapshot

    live, cpu, wall = timed(stream)
    timings["live: updates + evaluate"] = (cpu, wall)

    def batch() -> DriftSnapshot:
        tracker = DriftTracker(profile, window_seconds=60, slice_seconds=60, clock=clock)
        tracker.update_columns(len(next(iter(current.values()))), current)
        return evaluate(tracker)

    # The best of three: the batch path takes ~0.1 s, where a stray scheduler tick shows.
    runs = [timed(batch) for _ in range(3)]
    batched, cpu, wall = min(runs, key=lambda run: run[1])
    timings["batch: updates + evaluate"] = (cpu, wall)
    return live, batched, timings


def _summary(snapshot: DriftSnapshot) -> str:
    features = snapshot.features
    rule = sum(f.verdict == "drift" for f in features)
    by_psi = sum(f.methods[0].verdict == "drift" for f in features)
    by_test = sum(f.methods[1].verdict == "drift" for f in features)
    return (
        f"{rule} of {len(features)} features drifted by the {snapshot.rule.name} rule"
        f" ({by_psi} by PSI > 0.2 alone, {by_test} by Holm-corrected KS/chi2 p < {snapshot.rule.alpha:g})"
    )


def side_by_side(evidently: Mapping[str, ColumnVerdict], ours: DriftSnapshot) -> tuple[list[str], int]:
    """One line per column, both tools' verdicts and figures; and the number of columns they agree on."""
    lines = [f"{'column':<8} {'Evidently':<34} {'verdict':<9} {'ours: effect':>14} {'p (Holm)':>9} {'PSI':>7}  verdict"]
    agree = 0
    for result in ours.features:
        theirs = evidently[result.name]
        psi, test, effect = result.methods
        mine = result.verdict == "drift"
        agree += mine == theirs.drifted
        name = {"wasserstein": "W", "jensenshannon": "JS"}[effect.method]
        lines.append(
            f"{result.name:<8} {theirs.method + f' {theirs.value:.3f}':<34} {_drift(theirs.drifted):<9}"
            f" {name + f' {effect.score or 0.0:.3f}':>14} {test.corrected_pvalue or 0.0:>9.1e} {psi.score or 0.0:>7.3f}"
            f"  {result.verdict}{'' if mine == theirs.drifted else '   <- differs'}"
        )
    return lines, agree


def _drift(drifted: bool) -> str:
    return "drift" if drifted else "no_drift"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift_vs_evidently", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS, help=f"rows in each table (default {ROWS})")
    args = parser.parse_args(argv)
    try:
        import evidently  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        print(INSTALL)
        return 0
    rng = np.random.default_rng(20261126)
    reference = make_columns(rng, args.rows, numeric=15, categorical=5)
    current = make_columns(rng, args.rows, numeric=15, categorical=5, shift=0.3)
    verdicts, evidently_cpu, evidently_wall = run_evidently(reference, current)
    live, batched, ours = run_ours(reference, current, rng)
    lines, agree = side_by_side(verdicts, batched)
    print("\n".join(lines))
    print(f"evidently: {sum(v.drifted for v in verdicts.values())} of {len(verdicts)} columns drifted")
    print(f"ours: live {_summary(live)}; batch {_summary(batched)}")
    print(f"agreement with Evidently: {agree} of {len(verdicts)} columns")
    print(f"{'':<34} {'CPU s':>9} {'wall s':>9} {'Evidently / this (CPU)':>24}")
    print(f"{'Evidently DataDriftPreset':<34} {evidently_cpu:>9.3f} {evidently_wall:>9.3f}")
    for name, (cpu, wall) in ours.items():
        print(f"{'ours: ' + name:<34} {cpu:>9.3f} {wall:>9.3f} {evidently_cpu / cpu:>23.1f}x")
    build, batch_cpu = ours["profile build"][0], ours["batch: updates + evaluate"][0]
    both = build + batch_cpu
    print(f"{'ours: build + batch':<34} {both:>9.3f} {'':>9} {evidently_cpu / both:>23.1f}x")
    ratio = evidently_cpu / batch_cpu
    verdict = "met" if ratio >= MIN_RATIO else "MISSED"
    print(f"batch verdict (updates + evaluate) vs Evidently: {ratio:.1f}x faster (target >= {MIN_RATIO:g}x: {verdict})")
    live_ratio = evidently_cpu / ours["live: updates + evaluate"][0]
    print(f"live per-record path (updates + evaluate) vs Evidently: {live_ratio:.1f}x faster (no target yet)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
