"""The runtime flags and ``mlsidecar_fallback_active``, read through a registry as a scrape reads it."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from sidecar.serving.flags import Flags, fallback_gauge

ACTIVE = "mlsidecar_fallback_active"


def test_the_gauge_is_exposed_from_start_up_and_follows_the_flag() -> None:
    flags = Flags(fallback_available=True, clock=lambda: 1_780_000_000.0)
    registry = CollectorRegistry()
    registry.register(fallback_gauge("iris", flags))
    assert registry.get_sample_value(ACTIVE, {"model": "iris"}) == 0.0
    flags.set("use_fallback_model", True, source="alert:serving_errors_high", reason="5xx burst")
    assert registry.get_sample_value(ACTIVE, {"model": "iris"}) == 1.0
    flags.set("use_fallback_model", False, source="api")
    assert registry.get_sample_value(ACTIVE, {"model": "iris"}) == 0.0


def test_a_flag_that_cannot_be_set_leaves_the_gauge_at_zero() -> None:
    flags = Flags(fallback_available=False)
    registry = CollectorRegistry()
    registry.register(fallback_gauge("iris", flags))
    with pytest.raises(ValueError, match="SIDECAR_FALLBACK_URL"):
        flags.set("use_fallback_model", True, source="api")
    with pytest.raises(KeyError):
        flags.set("use_other_model", True, source="api")
    assert registry.get_sample_value(ACTIVE, {"model": "iris"}) == 0.0
