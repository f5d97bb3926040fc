"""Accuracy estimated from confidence (CBPE-style) against the realised accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from sidecar.performance import JoinedRow, PerformanceConfig
from sidecar.performance.estimate import ConfidenceWindow
from tests.performance.helpers import calibrated, metrics, rows, sampling_weights


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_realised_accuracy_on_a_calibrated_model(seed: int) -> None:
    rng = np.random.default_rng(seed)
    probabilities, labels = calibrated(rng, 20_000, 3)
    predictions = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    weights = sampling_weights(rng, 20_000)
    result = metrics(
        rows(labels.tolist(), predictions.tolist(), confidence=confidence.tolist(), weights=weights),
        PerformanceConfig(min_labels=1),
    )

    estimated, realised = result["estimated_accuracy"].value, result["accuracy"].value
    assert estimated is not None and realised is not None
    # The realised accuracy is a weighted mean of 20,000 Bernoulli draws: its standard
    # error is about 0.005 with these weights, so 0.02 is four standard errors.
    assert estimated == pytest.approx(realised, abs=0.02)
    assert estimated == pytest.approx(np.average(confidence, weights=weights))
    assert result["estimated_accuracy"].samples == 20_000


def test_counts_predictions_without_labels() -> None:
    labelled = rows([1], [1], confidence=[0.9])
    unlabelled = [JoinedRow("churn", "champion", 0, None, confidence=0.6, weight=2.0)]
    no_confidence = [JoinedRow("churn", "champion", 0, None, confidence=None, label=0)]
    result = metrics(labelled + unlabelled + no_confidence, PerformanceConfig(min_labels=1))
    assert result["estimated_accuracy"].value == pytest.approx((0.9 + 2 * 0.6) / 3)
    assert (result["estimated_accuracy"].samples, result["estimated_accuracy"].weighted_samples) == (2, 3.0)


def test_unavailable_without_confidence() -> None:
    result = metrics(rows([1, 0], [1, 1]), PerformanceConfig(min_labels=1))
    assert result["estimated_accuracy"].status == "unavailable"
    assert result["estimated_accuracy"].reason == "no prediction carried a confidence"


def test_confidence_window_is_the_weighted_mean_and_forgets_old_buckets() -> None:
    window = ConfidenceWindow(window_seconds=100.0, buckets=10)
    window.add("primary", 0.9, 1.0, now=0.0)
    window.add("primary", 0.6, 2.0, now=55.0)
    window.add("primary", None, 5.0, now=55.0)  # no confidence: left out
    window.add("primary", 1.5, 5.0, now=55.0)  # not a probability: left out
    window.add("challenger", 0.8, 1.0, now=56.0)
    result = window.result("primary", now=60.0)
    assert result.value == pytest.approx((0.9 + 2 * 0.6) / 3)
    assert (result.samples, result.weighted_samples, result.status) == (2, 3.0, "ok")
    assert window.variants() == {"primary", "challenger"}
    # At 105 the bucket [0, 10) has left the window; [50, 60) has not.
    assert window.result("primary", now=105.0).value == pytest.approx(0.6)
    later = window.result("primary", now=500.0)
    assert later.value is None and later.status == "unavailable"
