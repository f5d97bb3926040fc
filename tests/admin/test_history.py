"""The status page's history: one point per published snapshot, a bounded ring, copies of scores and counters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from sidecar.admin.history import ESTIMATED, History
from sidecar.assembly import Components, build_components
from sidecar.config import Settings
from sidecar.labels.snapshot import LabelsSnapshot
from sidecar.monitoring.evaluator import DataMonitors, DriftSettings, ReferenceStatus
from sidecar.performance import MetricResult, PerformanceSnapshot
from sidecar.quality import QualityMonitor
from sidecar.reference import ReferenceProfile
from sidecar.serving.metrics import ProxyMetrics
from tests.drift.helpers import FakeClock, numeric, profile, records
from tests.waiting import wait_until


def components(tmp_path: Path) -> Components:
    """The real monitoring pipeline, not started: its performance evaluator is what the history reads."""
    settings = Settings.from_env({"SIDECAR_UPSTREAM_URL": "http://127.0.0.1:9", "SIDECAR_STATE_DIR": str(tmp_path)})
    return build_components(settings)


def monitors_of(reference: ReferenceProfile, clock: FakeClock) -> DataMonitors:
    quality = QualityMonitor(reference, clock=clock)
    drift = DriftSettings(window_seconds=600, slice_seconds=10, min_samples=50)
    return DataMonitors(
        reference, ReferenceStatus.of(reference, "file"), quality, drift=drift, warmup=None, clock=clock
    )


def reference(*names: str) -> ReferenceProfile:
    rng = np.random.default_rng(3)
    return profile({name: numeric(rng.normal(0.0, 1.0, 2_000)) for name in names})


def evaluate(monitors: DataMonitors, clock: FakeClock, *, shift: float = 0.0, seconds: float = 15.0) -> None:
    """Some traffic, the clock moved on, and a new snapshot published as the evaluator publishes it."""
    rng = np.random.default_rng(int(clock.now))
    names = list(monitors.profile.features) if monitors.profile else []
    monitors.observe(records({name: rng.normal(shift, 1.0, 200).tolist() for name in names}))
    clock.now += seconds
    monitors.snapshot = monitors.evaluate()


def test_one_point_per_published_snapshot(tmp_path: Path) -> None:
    clock = FakeClock()
    monitors = monitors_of(reference("x"), clock)
    parts = components(tmp_path)
    history = History(monitors, parts.performance, ProxyMetrics("m", ("primary",)))
    assert history.record()
    # Page loads and polls in between evaluations add nothing.
    assert not history.record()
    assert len(history.view()) == 1
    evaluate(monitors, clock)
    assert history.record()
    assert len(history.view()) == 2


def test_the_ring_keeps_the_last_points_oldest_first(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    monitors = monitors_of(reference("x"), clock)
    parts = components(tmp_path)
    history = History(monitors, parts.performance, ProxyMetrics("m", ("primary",)), capacity=3)
    for _ in range(5):
        evaluate(monitors, clock, seconds=1.0)
        history.record()
    view = history.view()
    assert view.times.tolist() == [1003.0, 1004.0, 1005.0]
    assert len(view.psi["x"]) == len(view.requests) == len(view.latency) == 3


def test_a_point_copies_the_scores_and_counters_of_its_moment(tmp_path: Path) -> None:
    clock = FakeClock()
    monitors = monitors_of(reference("x", "y"), clock)
    serving = ProxyMetrics("m", ("primary", "fallback"))
    for route, status, seconds in (("primary", 200, 0.004), ("primary", 503, 0.2), ("fallback", 200, 0.03)):
        serving.record(serving.routes[route], status, seconds, seconds, 10, 10)
    parts = components(tmp_path)
    parts.performance.snapshot = LabelsSnapshot(
        taken_at=clock.now,
        model="model",
        task="classification",
        window_seconds=3600.0,
        min_labels=10,
        performance=(
            PerformanceSnapshot(
                "model", "primary", "classification", 40, 40, (MetricResult("accuracy", 0.875, 40, 40.0, "ok"),)
            ),
        ),
        estimated={"primary": MetricResult(ESTIMATED, 0.81, 120, 120.0, "ok")},
    )
    history = History(monitors, parts.performance, serving)
    evaluate(monitors, clock, shift=1.0)
    history.record()
    view = history.view()
    drift = monitors.snapshot.drift
    assert drift is not None
    for name in ("x", "y"):
        psi = drift.feature(name).method("psi")
        assert psi is not None and view.psi[name][-1] == psi.score
    assert view.metrics["accuracy"][-1] == 0.875
    # The estimate over all predictions, not the one over the labelled rows.
    assert view.metrics[ESTIMATED][-1] == 0.81
    assert np.isnan(view.metrics["f1"][-1])  # no value yet: unknown, never 0
    assert (view.requests[-1], view.errors[-1]) == (3.0, 1.0)
    assert view.latency[-1].sum() == 3.0


def test_a_new_reference_drops_the_psi_measured_against_the_old_one(tmp_path: Path) -> None:
    clock = FakeClock()
    first = monitors_of(reference("x"), clock)
    parts = components(tmp_path)
    history = History(first, parts.performance, ProxyMetrics("m", ("primary",)))
    evaluate(first, clock)
    history.record()
    # The reference changes (a learned one replaces the warm-up): other features from now on.
    history.monitors = second = monitors_of(reference("a", "b"), clock)
    evaluate(second, clock)
    history.record()
    view = history.view()
    assert list(view.psi) == ["a", "b"]
    assert np.isnan(view.psi["a"][0]) and np.isfinite(view.psi["a"][1])
    assert len(view.times) == 2  # the rest of the points stays


def test_a_history_needs_room_for_a_change(tmp_path: Path) -> None:
    parts = components(tmp_path)
    with pytest.raises(ValueError, match="at least 2 points"):
        History(parts.monitors, parts.performance, ProxyMetrics("m", ("primary",)), capacity=1)


@pytest.mark.anyio
async def test_run_records_each_evaluation_of_the_running_evaluator(tmp_path: Path) -> None:
    parts = components(tmp_path)
    history = History(parts.monitors, parts.performance, ProxyMetrics("m", ("primary",)))
    tasks = [asyncio.create_task(parts.monitors.run(0.05)), asyncio.create_task(history.run(0.05))]
    try:
        await wait_until(lambda: len(history.view()) >= 4)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    times = history.view().times
    assert (np.diff(times) > 0).all()  # each evaluation once, in order
