"""The experiment runner over a real SQLite store: the decision the data imply, the shared start, the faults."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from sidecar.experiments.data import Serving
from sidecar.experiments.definition import Experiment, experiment_from_mapping
from sidecar.experiments.runner import ExperimentRunner, serving_of
from sidecar.performance import PerformanceConfig
from sidecar.records import PredictionRecord
from sidecar.serving.metrics import LATENCY_BUCKETS, ProxyMetrics
from sidecar.store import FILENAME, PredictionStore
from tests.experiments.scenario import ARMS, MODEL, definition, exposures, routing, served, serving
from tests.store.support import T0, Clock, opened
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

CONFIG = PerformanceConfig(task="classification", min_labels=1)
EVEN = {"control": 1_000, "treatment": 1_000}


def runner_for(
    store: PredictionStore,
    records: Sequence[PredictionRecord],
    servings: tuple[Serving, ...],
    experiment: Experiment | None = None,
) -> ExperimentRunner:
    """A runner over ``store`` whose router routed ``records`` by their units, started at T0."""
    return ExperimentRunner(
        store,
        experiment or definition(),
        CONFIG,
        routing=lambda: routing(records),
        serving=lambda: servings,
        model=MODEL,
        clock=Clock(T0),
    )


@pytest.mark.parametrize(
    ("users", "rates", "decision", "named"),
    [
        (EVEN, {"control": 0.12, "treatment": 0.30}, "roll_out", ("treatment",)),
        (EVEN, {"control": 0.30, "treatment": 0.12}, "revert", ("treatment",)),
        # 45/55 against weights of 50/50: a sample ratio mismatch on capture, whatever the conversions say.
        ({"control": 900, "treatment": 1_100}, {"control": 0.12, "treatment": 0.30}, "invalid", ()),
    ],
)
async def test_the_runner_reaches_the_decision_the_data_imply(
    tmp_path: Path, users: dict[str, int], rates: dict[str, float], decision: str, named: tuple[str, ...]
) -> None:
    records = exposures(users)
    async with opened(tmp_path, buffer_rows=10_000, batch_rows=5_000) as store:
        await served(store, definition(), records, rates)
        # A prediction from before the experiment started is not in its window.
        store.add(exposures({"control": 1}, start=T0 - 3600, prefix="before-"))
        _, servings = serving()
        runner = runner_for(store, records, servings)
        assert runner.snapshot is None and runner.decision() is None
        snapshot = await runner.evaluate()
    assert snapshot is not None and runner.snapshot is snapshot
    assert (snapshot.decision.decision.decision, snapshot.decision.variants) == (decision, named)
    assert runner.decision() == decision
    assert (runner.started_at, snapshot.since, snapshot.computed_at) == (T0, T0, T0)
    capture = snapshot.ratio("capture")
    assert capture.observed == (users["control"], users["treatment"])
    assert capture.ratio.mismatch == (decision == "invalid")
    conversion = snapshot.metric("conversion")
    assert [arm.n for arm in conversion.arms] == [users["control"], users["treatment"]]
    assert [arm.serving.requests for arm in snapshot.arms] == [1_000, 1_000]
    assert runner.failures == {"store": 0, "error": 0}


async def test_a_guardrail_breach_reverts_a_treatment_that_converts_better(tmp_path: Path) -> None:
    records = exposures(EVEN)
    async with opened(tmp_path, buffer_rows=10_000, batch_rows=5_000) as store:
        await served(store, definition(), records, {"control": 0.12, "treatment": 0.30})
        _, servings = serving({"control": 10, "treatment": 90})  # 1% against 9% errors; 5 points allowed
        snapshot = await runner_for(store, records, servings).evaluate()
    assert snapshot is not None
    assert snapshot.decision.decision.decision == "revert"
    [guardrail] = snapshot.guardrails
    assert guardrail.check.breached and guardrail.check.increase == pytest.approx(0.08)


async def test_the_start_is_the_first_runs_after_a_restart(tmp_path: Path) -> None:
    records = exposures(EVEN)
    async with opened(tmp_path, buffer_rows=10_000, batch_rows=5_000) as store:
        await served(store, definition(), records, {"control": 0.12, "treatment": 0.12})
        _, servings = serving()
        first = runner_for(store, records, servings)
        await first.evaluate()
    # A restart an hour on: the window still starts when the experiment first ran, so nothing is lost.
    async with opened(tmp_path) as store:
        later = ExperimentRunner(
            store,
            definition(),
            CONFIG,
            routing=lambda: None,  # not known yet (no mirror update): zero
            serving=lambda: servings,
            model=MODEL,
            clock=Clock(T0 + 3600),
        )
        snapshot = await later.evaluate()
    assert later.started_at == first.started_at == T0
    assert snapshot is not None and snapshot.since == T0
    assert snapshot.ratio("capture").observed == (1_000, 1_000)
    assert [(a.routed_keyed, a.routed_randomised) for a in snapshot.arms] == [(0, 0), (0, 0)]


@contextlib.contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Another process holding the file's write lock: the store's writes fail (SQLite's busy timeout)."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


async def test_a_store_fault_keeps_the_last_snapshot_and_the_next_evaluation_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = exposures(EVEN)
    async with opened(tmp_path, buffer_rows=10_000, batch_rows=5_000) as store:
        await served(store, definition(), records, {"control": 0.12, "treatment": 0.30})
        await store.flush()
        _, servings = serving()
        runner = runner_for(store, records, servings)
        # The start cannot be recorded while another process holds the file: nothing to show yet.
        with write_lock(tmp_path / FILENAME), caplog.at_level(logging.WARNING):
            assert await runner.evaluate() is None
        assert (runner.started_at, runner.failures) == (None, {"store": 1, "error": 0})
        assert "the store could not be read; kept the last analysis" in caplog.text
        first = await runner.evaluate()
        assert first is not None and first.decision.decision.decision == "roll_out"
    # The store is gone (closed): the last analysis stays published, and each failure is counted.
    assert await runner.evaluate() is first
    assert await runner.evaluate() is first
    assert runner.failures == {"store": 3, "error": 0}
    assert runner.decision() == "roll_out"


async def test_run_evaluates_every_interval_and_outlives_a_failing_evaluation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = exposures(EVEN)
    calls = 0
    _, servings = serving()

    def flaky() -> tuple[Serving, ...]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("a bug in the serving counters")
        return servings

    async with opened(tmp_path, buffer_rows=10_000, batch_rows=5_000) as store:
        await served(store, definition(), records, {"control": 0.12, "treatment": 0.12})
        runner = ExperimentRunner(
            store, definition(), CONFIG, routing=lambda: routing(records), serving=flaky, model=MODEL
        )
        task = asyncio.create_task(runner.run(interval=0.05))
        try:
            await wait_until(lambda: calls >= 4, timeout=10)
            assert not task.done()
            assert runner.snapshot is not None and runner.failures == {"store": 0, "error": 1}
            assert "the analysis failed; kept the last one" in caplog.text
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_sequential_results_run_on_from_the_previous_snapshot(tmp_path: Path) -> None:
    experiment = definition(sequential=True)
    early = exposures(EVEN)
    # Later users with no difference between the arms: on their own, the evidence would weaken.
    late = exposures(EVEN, start=T0 + 5_000, prefix="late-")
    _, servings = serving()
    async with opened(tmp_path, buffer_rows=10_000, batch_rows=5_000) as store:
        await served(store, experiment, early, {"control": 0.10, "treatment": 0.18})
        runner = runner_for(store, early, servings, experiment=experiment)
        first = await runner.evaluate()
        await served(store, experiment, late, {"control": 0.14, "treatment": 0.14}, seed=8)
        second = await runner.evaluate()
        fresh = await runner_for(store, early + late, servings, experiment=experiment).evaluate()
    assert first is not None and second is not None and fresh is not None
    [p1, p2, p_fresh] = [s.metric("conversion").effects[0].effect for s in (first, second, fresh)]
    assert p_fresh.pvalue > p1.pvalue  # the evidence of the whole window is weaker than the first look's
    assert p2.pvalue == p1.pvalue  # the running minimum: a result once significant stays so
    assert p2.ci_low == max(p1.ci_low, p_fresh.ci_low) and p2.ci_high == min(p1.ci_high, p_fresh.ci_high)


def test_a_shadow_experiment_has_no_runner(tmp_path: Path) -> None:
    shadow = experiment_from_mapping(
        {
            "name": "shadow-v2",
            "mode": "shadow",
            "variants": {"control": {}, "challenger": {"upstream": "http://challenger"}},
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.02,
        }
    )
    store = PredictionStore(tmp_path)
    with pytest.raises(ValueError, match="shadow experiment"):
        ExperimentRunner(store, shadow, CONFIG, routing=lambda: None, serving=lambda: ())


def test_serving_of_reads_each_arms_requests_errors_and_p95() -> None:
    metrics = ProxyMetrics(MODEL, ARMS)
    for i in range(100):
        metrics.record(metrics.routes["control"], 200, 0.004, 0.003, 0, 0)  # all in (2.5 ms, 5 ms]
        # treatment: 90 fast, 10 in (0.25 s, 0.5 s], and 10 of the 100 failed (the proxy's own 502 among them)
        status = 502 if i < 5 else 500 if i < 10 else 404 if i < 20 else 200
        metrics.record(metrics.routes["treatment"], status, 0.3 if i >= 90 else 0.004, None, 0, 0)
    control, treatment, missing = serving_of(metrics, (*ARMS, "nobody"))
    assert (control.requests, control.error_rate) == (100, 0.0)
    assert control.latency_p95_ms == pytest.approx((0.0025 + 0.0025 * 0.95) * 1000)
    assert (treatment.requests, treatment.error_rate) == (100, 0.1)  # 4xx are not errors
    # The 95th of 100 is the 5th of the 10 slow ones: halfway through (0.25, 0.5], as histogram_quantile says.
    lower, upper = LATENCY_BUCKETS[LATENCY_BUCKETS.index(0.5) - 1], 0.5
    assert treatment.latency_p95_ms == pytest.approx((lower + (upper - lower) * 5 / 10) * 1000)
    assert missing.requests == 0 and math.isnan(missing.error_rate) and math.isnan(missing.latency_p95_ms)
    idle = serving_of(ProxyMetrics(MODEL, ARMS), ARMS)
    assert all(s.requests == 0 and math.isnan(s.error_rate) and math.isnan(s.latency_p95_ms) for s in idle)
