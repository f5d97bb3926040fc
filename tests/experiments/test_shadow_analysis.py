"""The shadow comparison of two models on the same requests, against scipy, statsmodels and numpy computed here."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]
from statsmodels.stats.contingency_tables import mcnemar  # type: ignore[import-untyped]
from statsmodels.stats.multitest import multipletests  # type: ignore[import-untyped]
from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

from sidecar.experiments.data import Serving
from sidecar.experiments.definition import Experiment, experiment_from_mapping
from sidecar.experiments.shadow_analysis import analyse_shadow
from sidecar.performance import PerformanceConfig
from sidecar.store import ShadowPairs

T0 = 1_764_144_638.0
ANSWERS: dict[Any, int] = {"stored": 900, "failed": 10, "not_captured": 90, "unreadable": 0}


def shadow(metrics: dict[str, Any], **more: Any) -> Experiment:
    return experiment_from_mapping(
        {
            "name": "shadow-v2",
            "mode": "shadow",
            "variants": {"control": {}, "challenger": {"upstream": "http://challenger:8080"}},
            "metrics": metrics,
            "mde": 0.02,
            **more,
        }
    )


def pairs_of(
    control: list[Any],
    challenger: list[Any],
    label: list[Any],
    *,
    control_rows: int | None = None,
    confidence: tuple[np.ndarray, np.ndarray] | None = None,
) -> ShadowPairs:
    n = len(control)
    ours, theirs = confidence if confidence is not None else (np.full(n, math.nan), np.full(n, math.nan))
    return ShadowPairs(
        n if control_rows is None else control_rows,
        control,
        [None] * n,
        ours,
        challenger,
        [None] * n,
        theirs,
        label,
        np.array([y is not None for y in label], dtype=np.bool_),
    )


def classifier_data(seed: int, n: int = 3_000) -> tuple[list[str], list[str], list[Any], np.ndarray, np.ndarray]:
    """A better challenger: it errs on 5% of the labelled rows, control on 9%; a third are unlabelled."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(["yes", "no"], size=n).tolist()
    flip = {"yes": "no", "no": "yes"}
    ours = [flip[y] if u < 0.09 else y for y, u in zip(truth, rng.random(n), strict=True)]
    theirs = [flip[y] if u < 0.05 else y for y, u in zip(truth, rng.random(n), strict=True)]
    label = [y if u < 0.66 else None for y, u in zip(truth, rng.random(n), strict=True)]
    return ours, theirs, label, rng.uniform(0.5, 1.0, size=n), rng.uniform(0.5, 1.0, size=n)


def test_a_classifiers_comparison_equals_the_oracles() -> None:
    ours, theirs, label, c_conf, t_conf = classifier_data(1)
    experiment = shadow(
        {
            "primary": [{"name": "accuracy", "source": "label"}],
            "secondary": [{"name": "recall", "source": "label"}, {"name": "precision", "source": "label"}],
            "guardrails": [{"name": "error_rate", "max_increase": 0.01}, {"name": "latency_p95_ms", "max_increase": 5}],
        },
        alpha=0.05,
        correction="holm",
    )
    config = PerformanceConfig(task="classification", positive_label="yes", min_labels=100)
    snapshot = analyse_shadow(
        experiment,
        pairs_of(ours, theirs, label, control_rows=3_200, confidence=(c_conf, t_conf)),
        control=Serving(10_000, 0.01, 40.0),
        challenger=Serving(9_000, 0.03, 43.0),
        answers=ANSWERS,
        config=config,
        now=T0 + 60,
        since=T0,
        min_samples=200,
    )
    n = len(ours)
    # Pairing: the store's counts.
    assert (snapshot.pairing.control_rows, snapshot.pairing.paired) == (3_200, n)
    assert snapshot.pairing.labelled == sum(y is not None for y in label)
    assert snapshot.pairing.rate == pytest.approx(n / 3_200) and snapshot.pairing.answers == ANSWERS
    # Agreement, with Wilson's interval.
    agreed = sum(a == b for a, b in zip(ours, theirs, strict=True))
    assert snapshot.agreement is not None and (snapshot.agreement.n, snapshot.agreement.agreed) == (n, agreed)
    low, high = proportion_confint(agreed, n, alpha=0.05, method="wilson")
    assert (snapshot.agreement.ci_low, snapshot.agreement.ci_high) == pytest.approx((low, high), rel=1e-9)
    # A classifier's differences are of its confidences.
    assert snapshot.compared == "confidence"
    assert snapshot.differences.mean == pytest.approx(float(np.mean(t_conf - c_conf)), rel=1e-9)
    assert snapshot.shift.verdict == "no_drift" and snapshot.shift.bins == 3  # "yes", "no", and the rest
    # Accuracy by McNemar, on the labelled rows.
    rows = [i for i, y in enumerate(label) if y is not None]
    right_c = np.array([ours[i] == label[i] for i in rows])
    right_t = np.array([theirs[i] == label[i] for i in rows])
    b, c = int(np.sum(right_c & ~right_t)), int(np.sum(~right_c & right_t))
    accuracy = snapshot.metric("accuracy")
    assert (accuracy.method, accuracy.n) == ("mcnemar", len(rows))
    assert accuracy.mcnemar is not None and (accuracy.mcnemar.control_only, accuracy.mcnemar.challenger_only) == (b, c)
    oracle = mcnemar(np.array([[0, b], [c, 0]]), exact=False, correction=True)
    assert accuracy.statistic == pytest.approx(oracle.statistic, rel=1e-9)
    assert accuracy.pvalue == pytest.approx(oracle.pvalue, rel=1e-9, abs=1e-300)
    assert accuracy.control == pytest.approx(right_c.mean()) and accuracy.challenger == pytest.approx(right_t.mean())
    assert accuracy.difference == pytest.approx(right_t.mean() - right_c.mean())
    # Recall, over the rows labelled positive, both models scored on each.
    positive = [i for i in rows if label[i] == "yes"]
    b_r = sum(ours[i] == "yes" and theirs[i] != "yes" for i in positive)
    c_r = sum(ours[i] != "yes" and theirs[i] == "yes" for i in positive)
    recall = snapshot.metric("recall")
    assert recall.n == len(positive) and recall.mcnemar is not None
    assert (recall.mcnemar.control_only, recall.mcnemar.challenger_only) == (b_r, c_r)
    # Precision has no paired test: each model's predicted positives are other requests.
    precision = snapshot.metric("precision")
    assert (precision.method, precision.verdict, math.isnan(precision.pvalue)) == (None, "not_paired", True)
    # Holm over the three, precision's missing p-value counting as 1.
    expected = multipletests([accuracy.pvalue, recall.pvalue, 1.0], method="holm")[1]
    assert (accuracy.pvalue_adjusted, recall.pvalue_adjusted) == pytest.approx(tuple(expected[:2]), rel=1e-9)
    assert accuracy.verdict == "challenger_better"
    assert math.isnan(precision.pvalue_adjusted)
    # Guardrails on the two models' serving signals.
    guardrails = {g.name: g for g in snapshot.guardrails}
    assert guardrails["error_rate"].breached and guardrails["error_rate"].increase == pytest.approx(0.02)
    assert not guardrails["latency_p95_ms"].breached
    assert [(arm.name, arm.control) for arm in snapshot.arms] == [("control", True), ("challenger", False)]


def test_a_regressions_losses_are_compared_by_the_paired_t() -> None:
    rng = np.random.default_rng(2)
    n = 800
    truth = rng.normal(50.0, 10.0, size=n)
    ours = truth + rng.normal(0.0, 3.0, size=n)
    theirs = truth + rng.normal(0.0, 2.5, size=n)
    label: list[Any] = [float(y) if i % 4 else None for i, y in enumerate(truth)]
    experiment = shadow(
        {"primary": [{"name": "mae", "source": "label"}], "secondary": [{"name": "mse", "source": "label"}]},
        alpha=0.1,
        correction="bonferroni",
    )
    snapshot = analyse_shadow(
        experiment,
        pairs_of(ours.tolist(), theirs.tolist(), label),
        control=Serving(1_000, 0.0, 20.0),
        challenger=Serving(1_000, 0.0, 21.0),
        answers=ANSWERS,
        config=PerformanceConfig(task="regression", min_labels=100),
        now=T0,
        since=T0,
        min_samples=200,
    )
    assert snapshot.agreement is None and snapshot.compared == "prediction"
    assert snapshot.differences.mean == pytest.approx(float(np.mean(theirs - ours)), rel=1e-9)
    labelled = np.array([y is not None for y in label])
    pvalues = []
    for name, loss in (("mae", np.abs), ("mse", np.square)):
        control_loss, challenger_loss = loss(ours - truth)[labelled], loss(theirs - truth)[labelled]
        oracle = stats.ttest_rel(challenger_loss, control_loss)
        interval = oracle.confidence_interval(0.9)
        metric = snapshot.metric(name)
        assert (metric.method, metric.n, metric.mcnemar) == ("paired_t", int(labelled.sum()), None)
        assert metric.difference == pytest.approx(float(np.mean(challenger_loss - control_loss)), rel=1e-9)
        assert metric.statistic == pytest.approx(oracle.statistic, rel=1e-9)
        assert metric.pvalue == pytest.approx(oracle.pvalue, rel=1e-9, abs=1e-300)
        assert (metric.ci_low, metric.ci_high) == pytest.approx((interval.low, interval.high), rel=1e-9)
        pvalues.append(metric.pvalue)
        # A loss's goal is to decrease: a significantly smaller one is better.
        assert metric.verdict == "challenger_better"
    assert [snapshot.metric(m).pvalue_adjusted for m in ("mae", "mse")] == pytest.approx(
        list(multipletests(pvalues, method="bonferroni")[1]), rel=1e-9
    )
    assert snapshot.shift.verdict in ("no_drift", "moderate") and snapshot.shift.bins == 10


def test_too_few_labelled_pairs_are_not_tested_and_a_worse_challenger_is_named() -> None:
    ours = ["a"] * 500
    theirs = ["a"] * 440 + ["b"] * 60  # wrong wherever it differs
    experiment = shadow({"primary": [{"name": "accuracy", "source": "label"}]})
    config = PerformanceConfig(task="classification", min_labels=100)
    few = analyse_shadow(
        experiment,
        pairs_of(ours, theirs, ["a"] * 50 + [None] * 450),
        control=Serving(0, math.nan, math.nan),
        challenger=Serving(0, math.nan, math.nan),
        answers=ANSWERS,
        config=config,
        now=T0,
        since=T0,
        min_samples=1_000,
    )
    accuracy = few.metric("accuracy")
    assert (accuracy.verdict, accuracy.method, accuracy.n) == ("insufficient_labels", "mcnemar", 50)
    assert math.isnan(accuracy.pvalue) and few.shift.verdict == "insufficient_data"
    enough = analyse_shadow(
        experiment,
        pairs_of(ours, theirs, ["a"] * 500),
        control=Serving(0, math.nan, math.nan),
        challenger=Serving(0, math.nan, math.nan),
        answers=ANSWERS,
        config=config,
        now=T0,
        since=T0,
        min_samples=100,
    )
    worse = enough.metric("accuracy")
    assert worse.mcnemar is not None and (worse.mcnemar.control_only, worse.mcnemar.challenger_only) == (60, 0)
    assert worse.verdict == "challenger_worse" and worse.difference == pytest.approx(-0.12)


def test_without_pairs_everything_is_undefined_not_zero() -> None:
    snapshot = analyse_shadow(
        shadow({"primary": [{"name": "accuracy", "source": "label"}]}),
        pairs_of([], [], []),
        control=Serving(0, math.nan, math.nan),
        challenger=Serving(0, math.nan, math.nan),
        answers=dict.fromkeys(ANSWERS, 0),
        config=PerformanceConfig(min_labels=1),
        now=T0,
        since=T0,
        min_samples=1,
    )
    assert math.isnan(snapshot.pairing.rate) and snapshot.agreement is not None and snapshot.agreement.n == 0
    assert math.isnan(snapshot.agreement.rate) and snapshot.differences.n == 0
    assert snapshot.metric("accuracy").verdict == "insufficient_labels"
