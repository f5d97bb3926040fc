"""Pin the drift package's public API."""

from __future__ import annotations

import sidecar.drift


def test_all_exports_exist_and_are_listed() -> None:
    assert sidecar.drift.__all__ == [
        "ALPHA",
        "Collected",
        "ColumnValues",
        "EPSILON",
        "PSI_DRIFT",
        "PSI_MODERATE",
        "DriftResult",
        "DriftSnapshot",
        "DriftTracker",
        "Method",
        "MethodResult",
        "Source",
        "Verdict",
        "WindowStats",
        "chi2_homogeneity",
        "collect",
        "compute",
        "evaluate",
        "ks_binned",
        "psi",
        "psi_verdict",
        "pvalue_verdict",
    ]
    for name in sidecar.drift.__all__:
        assert getattr(sidecar.drift, name) is not None
