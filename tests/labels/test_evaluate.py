"""The labels side without a server: labels joined through a real store, one snapshot published per evaluation.

The store's clock dates each label's arrival, so every delay is known here
before the sidecar counts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sidecar.labels.evaluate import PerformanceEvaluator
from sidecar.labels.ingest import LabelIngest
from sidecar.labels.metrics import LabelMetrics
from sidecar.labels.retraining import Retrainer, RetrainPolicy
from sidecar.labels.snapshot import DELAY_BUCKETS
from sidecar.labels.views import performance_json
from sidecar.labels.window import LabelledWindow
from sidecar.monitoring.evaluator import DataMonitors, DriftSettings, ReferenceStatus
from sidecar.performance import PerformanceConfig
from sidecar.quality import QualityMonitor
from sidecar.store import LabelItem, PredictionStore
from tests.records import make_record

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0
DAY = 86_400.0
MODEL = "m"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Labels:
    clock: Clock
    store: PredictionStore
    ingest: LabelIngest
    evaluator: PerformanceEvaluator
    retrainer: Retrainer
    registry: CollectorRegistry


@asynccontextmanager
async def labels_side(tmp_path: Path, predictions: int, policy: RetrainPolicy | None = None) -> AsyncIterator[Labels]:
    """``predictions`` one-row predictions made at T0 ("r0", "r1", ...), stored; nothing labelled yet."""
    clock = Clock(T0)
    store = PredictionStore(tmp_path, ttl_seconds=400 * DAY, clock=clock)
    await store.start()
    config = PerformanceConfig(task="classification", classes=("a", "b"), min_labels=1)
    window = LabelledWindow(seconds=365 * DAY, max_rows=1_000)
    data = DataMonitors(
        None,
        ReferenceStatus("disabled"),
        QualityMonitor(None, clock=clock),
        drift=DriftSettings(3600.0, 60.0, 200),
        warmup=None,
        clock=clock,
    )
    retrainer = Retrainer(MODEL, policy or RetrainPolicy(), trained_at=None, baseline={}, clock=clock)
    ingest = LabelIngest(store, config, window, model=MODEL, retrainer=retrainer, data=data, clock=clock)
    evaluator = PerformanceEvaluator(
        store, config, window, ingest, model=MODEL, retrainer=retrainer, data=data, clock=clock
    )
    registry = CollectorRegistry()
    registry.register(LabelMetrics(evaluator, ingest, store, baseline={}, trained_at=None))
    try:
        records = [
            make_record(timestamp=T0, request_id=f"r{i}", model_name=MODEL, prediction="a", confidence=0.9)
            for i in range(predictions)
        ]
        store.add(records)
        await store.flush()
        evaluator.observe(records)
        yield Labels(clock, store, ingest, evaluator, retrainer, registry)
    finally:
        await store.close(asyncio.get_running_loop().time() + 5.0)


async def test_label_delays_are_cumulative_in_the_json_and_the_prometheus_histogram(tmp_path: Path) -> None:
    # On a bound counts in that bucket (<=, as Prometheus' le); beyond 90 days only in +Inf.
    delays = [0.5, 1.0, 59.0, 3600.0, 2 * DAY, 100 * DAY]
    async with labels_side(tmp_path, len(delays)) as side:
        for i, delay in enumerate(delays):
            side.clock.now = T0 + delay
            [outcome] = await side.ingest.ingest([LabelItem(f"r{i}", None, "a")])
            assert outcome.kind == "joined"
        body = performance_json(await side.evaluator.evaluate())

    buckets = body["label_delay_seconds"]["buckets"]
    assert buckets == {
        "1": 2,
        "10": 2,
        "60": 3,
        "300": 3,
        "900": 3,
        "3600": 4,
        "21600": 4,
        "86400": 4,
        "259200": 5,
        "604800": 5,
        "1209600": 5,
        "2592000": 5,
        "7776000": 5,
        "+Inf": 6,
    }
    assert body["label_delay_seconds"]["count"] == 6
    assert body["label_delay_seconds"]["sum"] == pytest.approx(sum(delays))
    # The Prometheus histogram: the same cumulative counts, under the "le" values it has always had.
    sample = side.registry.get_sample_value
    labels = {"model": MODEL}
    les = ["1", "10", "60", "300", "900", "3600", "21600", "86400", "259200", "604800", "1.2096e+06", "2.592e+06",
           "7.776e+06", "+Inf"]  # fmt: skip
    assert len(les) == len(DELAY_BUCKETS) + 1
    got = [sample("mlsidecar_label_delay_seconds_bucket", {**labels, "le": le}) for le in les]
    assert got == list(buckets.values())
    assert sample("mlsidecar_label_delay_seconds_count", labels) == 6
    assert sample("mlsidecar_label_delay_seconds_sum", labels) == pytest.approx(sum(delays))


async def test_the_body_changes_only_when_a_snapshot_is_published(tmp_path: Path) -> None:
    async with labels_side(tmp_path, 4, RetrainPolicy(min_new_labels=2)) as side:
        side.clock.now = T0 + 60.0
        items = [
            LabelItem("r0", None, "a"),
            LabelItem("r1", None, "b"),
            LabelItem("r1", None, "a"),  # a second label for r1: the first one stays
            LabelItem("nobody", None, "a"),
            LabelItem("r2", None, "zebra"),  # not one of the classes
        ]
        kinds = [outcome.kind for outcome in await side.ingest.ingest(items)]
        assert kinds == ["joined", "joined", "duplicate", "unmatched", "invalid"]
        # Counted at once, so /metrics has it; the JSON shows the last snapshot, taken before.
        assert side.registry.get_sample_value("mlsidecar_labels_total", {"model": MODEL, "outcome": "joined"}) == 2
        before = performance_json(side.evaluator.snapshot)
        assert before["labels"]["joined"] == 0 and before["label_delay_seconds"]["count"] == 0
        assert before["variants"] == [] and before["label_coverage"] is None
        assert before["retraining"]["last_trigger"] is None and before["retraining"]["new_labels"] == 0

        side.clock.now = T0 + 120.0
        body = performance_json(await side.evaluator.evaluate())
    assert body["labels"] == {"joined": 2, "unmatched": 1, "duplicate": 1, "invalid": 1}
    assert body["label_delay_seconds"]["count"] == 2
    assert body["label_coverage"] == {"predictions": 4, "labelled": 2, "share": 0.5}
    [variant] = body["variants"]
    assert variant["labelled"] == 2 and variant["metrics"]["accuracy"]["value"] == 0.5
    # Over all four predictions, labelled or not: each was 90% confident.
    assert body["estimated_accuracy"]["primary"]["value"] == pytest.approx(0.9)
    assert body["estimated_accuracy"]["primary"]["samples"] == 4
    # The trigger fired by this evaluation is in the snapshot it published.
    last = body["retraining"]["last_trigger"]
    assert (last["reason"], last["outcome"]) == ("new_data", "recorded")
    assert body["retraining"]["new_labels"] == 0


async def test_a_failed_computation_keeps_the_metrics_and_still_publishes_the_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with labels_side(tmp_path, 2) as side:
        side.clock.now = T0 + 10.0
        await side.ingest.ingest([LabelItem("r0", None, "a")])
        first = await side.evaluator.evaluate()

        def broken(*args: object) -> None:
            raise RuntimeError("scoring failed")

        monkeypatch.setattr("sidecar.labels.evaluate._compute", broken)
        await side.ingest.ingest([LabelItem("r1", None, "b")])
        second = await side.evaluator.evaluate()
    assert second.performance == first.performance  # the last good metrics, one label
    assert second.outcomes["joined"] == 2 and second.delay.count == 2
    assert second.coverage is not None and second.coverage.labelled == 2
