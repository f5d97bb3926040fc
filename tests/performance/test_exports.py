"""Pin the performance package's public API."""

from __future__ import annotations

import sidecar.performance


def test_all_exports_exist_and_are_listed() -> None:
    assert sidecar.performance.__all__ == [
        "METRICS",
        "TASKS",
        "JoinedRow",
        "MetricResult",
        "PerformanceConfig",
        "PerformanceSnapshot",
        "Status",
        "Task",
        "class_key",
        "compute",
        "compute_variant",
        "validate_label",
    ]
    for name in sidecar.performance.__all__:
        assert getattr(sidecar.performance, name) is not None
