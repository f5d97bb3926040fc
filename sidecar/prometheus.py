"""What every metrics module of the sidecar shares: the name prefix, the registry, one family helper.

A module of its own, free of the request path and of numpy, so that the
monitoring layers can build their collectors without importing the proxy.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import CounterMetricFamily, Metric

__all__ = ["PREFIX", "counter_by", "create_registry"]

PREFIX = "mlsidecar_"


def counter_by(name: str, documentation: str, model: str, label: str, counts: Mapping[str, float]) -> Metric:
    """A counter family labelled ``(model, label)``: one sample per entry of ``counts``, in its order."""
    family = CounterMetricFamily(PREFIX + name, documentation, labels=("model", label))
    for value, n in counts.items():
        family.add_metric((model, value), n)
    return family


def create_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and GC collectors.

    Never the global ``REGISTRY``: tests and embedders get an isolated one.
    """
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
