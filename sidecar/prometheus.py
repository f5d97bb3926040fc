"""What every metrics module of the sidecar shares: the name prefix, the registry, the family helpers.

A module of its own, free of the request path and of numpy, so that the
monitoring layers can build their collectors without importing the proxy.

Two kinds of metric live in the sidecar. The hot ones (the proxy's request
metrics, the capture hand-off's counts, the drift and performance snapshots)
are custom collectors that render plain numbers at scrape time, because
prometheus-client's own metrics take a lock on every update. The cold ones,
moved a few times a minute at most (monitor errors, retraining triggers,
alert notifications, the fallback flag), are prometheus-client's own
:class:`~prometheus_client.Counter` and :class:`~prometheus_client.Gauge`,
made with :func:`counter` and :func:`gauge`.

Every ``mlsidecar_*`` family has ``model`` (``SIDECAR_MODEL_NAME``) as its
first label, so that one PromQL selector picks a model's series from any
family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import CounterMetricFamily, Metric

__all__ = ["PREFIX", "counter", "counter_by", "create_registry", "gauge"]

PREFIX = "mlsidecar_"


def counter_by(name: str, documentation: str, model: str, label: str, counts: Mapping[str, float]) -> Metric:
    """A counter family labelled ``(model, label)``: one sample per entry of ``counts``, in its order."""
    family = CounterMetricFamily(PREFIX + name, documentation, labels=("model", label))
    for value, n in counts.items():
        family.add_metric((model, value), n)
    return family


def counter(name: str, documentation: str, labelnames: Sequence[str]) -> Counter:
    """A prometheus-client ``Counter`` named ``PREFIX + name``, on no registry yet.

    prometheus-client registers a metric on its global ``REGISTRY`` unless told
    otherwise; this one waits for the assembly to register it on the
    sidecar's own registry. Bind every child with ``.labels(...)`` right
    away, so that each series is exposed at 0 from the first scrape.

    Usage::

        errors = counter("monitor_errors_total", "Faults inside monitoring.", ("model", "stage"))
        process = errors.labels("iris", "process")
        registry.register(errors)
        process.inc()
    """
    return Counter(PREFIX + name, documentation, labelnames, registry=None)


def gauge(name: str, documentation: str, labelnames: Sequence[str]) -> Gauge:
    """A prometheus-client ``Gauge`` named ``PREFIX + name``, on no registry yet; see :func:`counter`."""
    return Gauge(PREFIX + name, documentation, labelnames, registry=None)


def create_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and GC collectors.

    Never the global ``REGISTRY``: tests and embedders get an isolated one.
    """
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
