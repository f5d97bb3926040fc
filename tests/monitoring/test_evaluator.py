"""The data monitors apply the configured verdict rule, and their metrics export every figure behind it."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.drift import psi_verdict
from sidecar.monitoring.evaluator import DataMonitors, DriftSettings, ReferenceStatus
from sidecar.monitoring.metrics import DataMetrics
from sidecar.quality import QualityMonitor
from tests.drift.helpers import FakeClock, categorical, numeric, profile, record


def monitors(settings: DriftSettings) -> DataMonitors:
    rng = np.random.default_rng(3)
    clock = FakeClock()
    reference = profile(
        {"age": numeric(rng.normal(40.0, 10.0, 20_000)), "country": categorical(["DE", "FR"], [0.6, 0.4], 20_000)},
        outputs={"prediction": categorical(["yes", "no"], [0.3, 0.7], 20_000)},
    )
    data = DataMonitors(
        reference,
        ReferenceStatus("file"),
        QualityMonitor(reference, clock=clock),
        drift=settings,
        warmup=None,
        clock=clock,
    )
    # age shifted by 0.3σ, country and the prediction as in the reference.
    ages = rng.normal(43.0, 10.0, 3_000).tolist()
    countries = rng.choice(["DE", "FR"], 3_000, p=[0.6, 0.4]).tolist()
    predictions = rng.choice(["yes", "no"], 3_000, p=[0.3, 0.7]).tolist()
    data.observe(
        [record({"age": a, "country": c}, prediction=p) for a, c, p in zip(ages, countries, predictions, strict=True)]
    )
    return data


def test_the_settings_choose_the_rule() -> None:
    combined = monitors(DriftSettings(3600.0, 60.0, 200)).evaluate().drift
    psi = monitors(DriftSettings(3600.0, 60.0, 200, verdict="psi")).evaluate().drift
    assert combined is not None and psi is not None
    assert (combined.rule.name, psi.rule.name) == ("combined", "psi")
    # The same counts (the same seed): a 0.3σ shift is drift by the combined rule, PSI's verdict by PSI alone.
    age = psi.feature("age")
    assert combined.feature("age").verdict == "drift"
    assert age.methods[0].score is not None and age.verdict == psi_verdict(age.methods[0].score) != "drift"
    assert combined.feature("country").verdict == psi.feature("country").verdict == "no_drift"


def test_alpha_and_the_thresholds_are_the_settings() -> None:
    strict = DriftSettings(3600.0, 60.0, 200, alpha=1e-40, wasserstein=0.05, jensenshannon=0.3)
    drift = monitors(strict).evaluate().drift
    assert drift is not None
    assert (drift.rule.alpha, drift.rule.wasserstein, drift.rule.jensenshannon) == (1e-40, 0.05, 0.3)
    age = drift.feature("age")
    # Material at 0.05, but at alpha 1e-40 a p-value of about 1e-26 is no longer real.
    assert age.methods[2].verdict == "drift" and age.methods[1].verdict == "no_drift"
    assert age.verdict == "no_drift"


def test_every_score_raw_and_corrected_p_value_and_effect_is_exported() -> None:
    data = monitors(DriftSettings(3600.0, 60.0, 200))
    data.snapshot = data.evaluate()
    registry = CollectorRegistry()
    registry.register(DataMetrics("credit", data))
    samples = {
        (family.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }
    drift = data.snapshot.drift
    assert drift is not None
    expected = {}
    for result, family, key in [
        *((r, "mlsidecar_feature_drift", "feature") for r in drift.features),
        *((r, "mlsidecar_prediction_drift", "output") for r in drift.outputs),
    ]:
        for method in result.methods:
            labels = tuple(sorted({"model": "credit", key: result.name, "method": method.method}.items()))
            for suffix, value in (
                ("score", method.score),
                ("pvalue", method.pvalue),
                ("corrected_pvalue", method.corrected_pvalue),
            ):
                if value is not None:
                    expected[(f"{family}_{suffix}", labels)] = value
    assert {k: v for k, v in samples.items() if k in expected} == pytest.approx(expected, rel=1e-12)
    assert set(expected) <= set(samples)
    methods = {dict(labels)["method"] for name, labels in expected if name.endswith("_score")}
    assert methods == {"psi", "ks", "chi2", "wasserstein", "jensenshannon"}
    corrected = [name for name, labels in expected if name.endswith("corrected_pvalue")]
    assert sorted(set(corrected)) == [
        "mlsidecar_feature_drift_corrected_pvalue",
        "mlsidecar_prediction_drift_corrected_pvalue",
    ]
    assert samples[("mlsidecar_drifted_feature_share", (("model", "credit"),))] == 0.5
