"""The signal source's experiment decision: read from the callable the wiring gives, None without one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sidecar.alerting.source import SignalSource
from sidecar.assembly import build_components
from sidecar.config import Settings
from sidecar.serving.metrics import ProxyMetrics

pytestmark = pytest.mark.anyio


async def test_the_experiment_decision_is_the_callables_word(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"SIDECAR_UPSTREAM_URL": "http://127.0.0.1:9", "SIDECAR_STATE_DIR": str(tmp_path), "SIDECAR_LOG_SINK": "none"}
    )
    parts = build_components(settings)
    metrics = ProxyMetrics(settings.model_name, ("control", "treatment"))
    decision: str | None = None

    def sources(read: Callable[[], str | None] | None) -> SignalSource:
        return SignalSource(
            metrics,
            parts.monitors,
            parts.performance,
            baseline={},
            rate_window_seconds=60,
            min_requests=10,
            variant="control",
            experiment_decision=read,
        )

    source = sources(lambda: decision)
    assert source.build(now=1000.0).text("experiment_decision") is None  # not analysed yet
    decision = "revert"
    assert source.build(now=1001.0).text("experiment_decision") == "revert"
    # No experiment: no callable, and the signal is unknown.
    assert sources(None).build(now=1002.0).text("experiment_decision") is None
