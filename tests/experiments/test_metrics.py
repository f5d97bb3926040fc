"""The experiment's metrics: the analysis families over the runner's snapshot, and the serving side's counters."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from sidecar.capture.handoff import Handoff
from sidecar.experiments.decision import DECISIONS
from sidecar.experiments.definition import experiment_from_mapping
from sidecar.experiments.metrics import ExperimentMetrics
from sidecar.experiments.routing import Router
from sidecar.experiments.runner import ExperimentRunner
from sidecar.experiments.shadow import OUTCOMES, Shadow, ShadowResponse
from sidecar.experiments.tap import ShadowTap
from sidecar.experiments.traffic import TrafficMetrics
from sidecar.experiments.view import EFFECT_STATS, effect_samples
from sidecar.performance import PerformanceConfig
from tests.experiments.scenario import MODEL, definition, exposures, routing, served, serving
from tests.store.support import T0, Clock, opened
from tests.tools import binary

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def exposition(collector: Collector) -> tuple[bytes, Samples]:
    """The text exposition of ``collector`` alone, and its samples by (name, labels in the family's order)."""
    registry = CollectorRegistry()
    registry.register(collector)
    samples: Samples = {
        (sample.name, tuple(sample.labels.items())): sample.value
        for family in collector.collect()
        for sample in family.samples
    }
    return generate_latest(registry), samples


def assert_promtool_finds_nothing(text: bytes) -> None:
    result = subprocess.run([binary("promtool"), "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == b"", "promtool reported findings"


def model_first(samples: Samples) -> None:
    assert samples and all(labels[0] == ("model", MODEL) for _, labels in samples)


async def test_the_analysis_families_follow_the_snapshot(tmp_path: Path) -> None:
    experiment = definition()
    records = exposures({"control": 500, "treatment": 500})
    _, servings = serving()
    async with opened(tmp_path, buffer_rows=5_000) as store:
        await served(store, experiment, records, {"control": 0.1, "treatment": 0.3})
        runner = ExperimentRunner(
            store,
            experiment,
            PerformanceConfig(min_labels=1),
            routing=lambda: routing(records),
            serving=lambda: servings,
            model=MODEL,
            clock=Clock(T0),
        )
        collector = ExperimentMetrics(runner, model=MODEL)
        before_text, before = exposition(collector)
        snapshot = await runner.evaluate()
        assert snapshot is not None
        after_text, after = exposition(collector)
    common = (("model", MODEL), ("experiment", "ranker-v2"))
    # Before the first analysis: no effect, p-value or decision; the counters are there from 0.
    assert {name for name, _ in before} == {
        "mlsidecar_experiment_evaluation_failures_total",
        "mlsidecar_experiment_outcomes_total",
    }
    assert before["mlsidecar_experiment_evaluation_failures_total", (*common, ("reason", "store"))] == 0
    assert before["mlsidecar_experiment_outcomes_total", (*common, ("outcome", "joined"))] > 0  # the conversions
    # After it: every decision, the current one 1.
    decisions = {
        labels[-1][1]: value for (name, labels), value in after.items() if name == "mlsidecar_experiment_decision"
    }
    assert decisions == {decision: float(decision == "roll_out") for decision in DECISIONS}
    effects = {labels[2:]: value for (name, labels), value in after.items() if name == "mlsidecar_experiment_effect"}
    assert effects == {
        (("variant", variant), ("metric", metric), ("stat", stat)): value
        for (variant, metric, stat), value in effect_samples(snapshot)
    }
    assert {labels[-1][1] for labels in effects} == set(EFFECT_STATS)
    # The router routed every request by its unit: no coin-routed units to test, so no assignment p-value.
    pvalues = {labels[-1]: v for (name, labels), v in after.items() if name == "mlsidecar_experiment_srm_pvalue"}
    assert pvalues == {("stage", "capture"): pytest.approx(snapshot.ratio("capture").ratio.pvalue)}
    assert math.isnan(snapshot.ratio("assignment").ratio.pvalue)
    for text, samples in ((before_text, before), (after_text, after)):
        model_first(samples)
        assert_promtool_finds_nothing(text)


async def test_the_failure_counter_counts_evaluations_that_kept_the_last_snapshot(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        pass
    _, servings = serving()
    runner = ExperimentRunner(
        store, definition(), PerformanceConfig(), routing=lambda: None, serving=lambda: servings, model=MODEL
    )
    assert await runner.evaluate() is None
    _, samples = exposition(ExperimentMetrics(runner, model=MODEL))
    failures = {
        labels[-1][1]: value
        for (name, labels), value in samples.items()
        if name == "mlsidecar_experiment_evaluation_failures_total"
    }
    assert failures == {"store": 1, "error": 0}


def test_the_serving_side_counts_assignments_per_arm() -> None:
    experiment = definition()
    router = Router(experiment)
    for user in range(200):
        router.route([(b"x-user-id", f"u-{user}".encode())])
    for _ in range(10):
        router.route([])  # no unit: a coin
    text, samples = exposition(TrafficMetrics(MODEL, experiment, router=router))
    units = {labels[-1][1]: v for (name, labels), v in samples.items() if name == "mlsidecar_experiment_units_total"}
    assert units == {
        "control": router.keyed[0] + router.randomised[0],
        "treatment": router.keyed[1] + router.randomised[1],
    }
    assert sum(units.values()) == 210 and min(units.values()) > 50
    assert not any(name.startswith("mlsidecar_shadow") for name, _ in samples)
    model_first(samples)
    assert_promtool_finds_nothing(text)


def test_the_serving_side_counts_every_shadow_outcome_from_zero() -> None:
    experiment = experiment_from_mapping(
        {
            "name": "shadow-v2",
            "mode": "shadow",
            "variants": {"control": {}, "challenger": {"upstream": "http://127.0.0.1:9"}},
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.02,
        }
    )
    # Never started: submit() counts what it cannot queue without sending anything.
    shadow = Shadow(
        "http://127.0.0.1:9",
        experiment=experiment.name,
        on_response=lambda response: None,
        concurrency=1,
        timeout=1.0,
        queue_size=1,
        queue_max_bytes=1024,
    )
    shadow.submit("POST", b"/predict", b"", 0, None, "req-1")  # the proxy kept no body
    shadow.submit("POST", b"/predict", b"", 0, b"x" * 2048, "req-2")  # larger than the whole bound
    text, samples = exposition(TrafficMetrics(MODEL, experiment, shadow=shadow))
    mirrors = {labels[-1][1]: v for (name, labels), v in samples.items() if name == "mlsidecar_shadow_requests_total"}
    assert mirrors == {outcome: 2.0 if outcome == "dropped_too_large" else 0.0 for outcome in OUTCOMES}
    assert not any(name.startswith("mlsidecar_experiment") for name, _ in samples)
    model_first(samples)
    assert_promtool_finds_nothing(text)


def test_the_serving_side_counts_the_answers_the_comparison_never_got() -> None:
    experiment = experiment_from_mapping(
        {
            "name": "shadow-v2",
            "mode": "shadow",
            "variants": {"control": {}, "challenger": {"upstream": "http://127.0.0.1:9"}},
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.02,
        }
    )
    handoff = Handoff(maxsize=2, max_bytes=1 << 20)
    tap = ShadowTap(handoff.put_spare, variant="challenger")
    for i in range(4):
        tap(ShadowResponse(f"req-{i}", "sent", 200, [], b"{}", 0.01))  # one fits in the spare half; three do not
    shadow = Shadow(
        "http://127.0.0.1:9",
        experiment=experiment.name,
        on_response=tap,
        concurrency=1,
        timeout=1.0,
        queue_size=1,
        queue_max_bytes=1024,
    )
    text, samples = exposition(TrafficMetrics(MODEL, experiment, shadow=shadow, tap=tap))
    key = ("mlsidecar_shadow_comparison_dropped_total", (("model", MODEL), ("experiment", "shadow-v2")))
    assert samples[key] == 3
    model_first(samples)
    assert_promtool_finds_nothing(text)
