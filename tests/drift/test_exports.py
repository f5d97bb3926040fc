"""Pin the drift package's public API."""

from __future__ import annotations

import sidecar.drift


def test_all_exports_exist_and_are_listed() -> None:
    assert sidecar.drift.__all__ == [
        "ALPHA",
        "Collected",
        "ColumnValues",
        "EFFECT_THRESHOLD",
        "EPSILON",
        "PSI_DRIFT",
        "PSI_MODERATE",
        "RULES",
        "DriftResult",
        "DriftSnapshot",
        "DriftTracker",
        "Effect",
        "Method",
        "MethodResult",
        "Rule",
        "Side",
        "Source",
        "Verdict",
        "VerdictRule",
        "WindowStats",
        "bin_labels",
        "chi2_homogeneity",
        "collect",
        "compute",
        "evaluate",
        "holm",
        "jensenshannon",
        "ks_binned",
        "normed_wasserstein",
        "psi",
        "psi_verdict",
        "pvalue_verdict",
        "wasserstein_binned",
    ]
    for name in sidecar.drift.__all__:
        assert getattr(sidecar.drift, name) is not None
