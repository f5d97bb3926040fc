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

Label values come from configuration and reference profiles, never from
payloads, and a learned profile bounds its features; as a last line of
defence the registry of :func:`create_registry` serves at most
``SIDECAR_METRICS_MAX_SERIES`` series per family, so nothing can grow the
exposition (and the scrape's time and memory) without bound. A family past it
keeps its first series, whole (a histogram's buckets stay together), and
``mlsidecar_metrics_series_dropped{model,family}`` says how many were cut.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["PREFIX", "CappedRegistry", "cap_series", "counter", "counter_by", "create_registry", "gauge"]

PREFIX = "mlsidecar_"

logger = logging.getLogger("sidecar.prometheus")

# Labels that tell a histogram's or a summary's samples of one series apart.
_SERIES_PARTS = frozenset({"le", "quantile"})


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


def create_registry(
    model: str, *, max_series: int, process: bool = True, report_cuts: bool = True
) -> CollectorRegistry:
    """A fresh registry, at most ``max_series`` series per family.

    Never the global ``REGISTRY``: tests and embedders get an isolated one.
    With ``process``, it has the process, platform and GC collectors; with
    ``report_cuts``, ``mlsidecar_metrics_series_dropped``. Where ``/metrics``
    joins two registries' expositions (the serving and the monitoring
    process), each of these families must come from one of them only.
    """
    registry = CappedRegistry(model, max_series=max_series, report_cuts=report_cuts)
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


class CappedRegistry(CollectorRegistry):
    """A registry whose exposition holds at most ``max_series`` series per family, and counts what it cuts.

    A series is a label set, less ``le`` and ``quantile``: a histogram's
    buckets, sum and count are cut or kept together. A family keeps its first
    ``max_series`` series in the order its collector gives them. The families
    cut since start-up are listed in ``mlsidecar_metrics_series_dropped``
    with the series left out of this exposition (0 once they fit again), and
    each is logged once.

    Usage::

        registry = CappedRegistry("iris", max_series=20_000)
        registry.register(collector)
        generate_latest(registry)  # at most 20,000 series of each family, plus the dropped gauge
    """

    def __init__(self, model: str, *, max_series: int, report_cuts: bool = True) -> None:
        if max_series < 1:
            raise ValueError(f"max_series must be at least 1, not {max_series}")
        super().__init__(auto_describe=True)
        self.model = model
        self.max_series = max_series
        self.report_cuts = report_cuts
        self._cut: dict[str, int] = {}  # family (as the text format names it) -> series cut from the last exposition

    def collect(self) -> Iterator[Metric]:
        cut = dict.fromkeys(self._cut, 0)
        for family in super().collect():
            capped, dropped = cap_series(family, self.max_series)
            if dropped:
                name = family.name + "_total" if family.type == "counter" else family.name
                if name not in self._cut:
                    logger.warning(
                        "metric family %s has more than SIDECAR_METRICS_MAX_SERIES=%d series; %d left out of /metrics",
                        name,
                        self.max_series,
                        dropped,
                    )
                cut[name] = dropped
            yield capped
        self._cut = cut
        if not self.report_cuts:
            return
        family = GaugeMetricFamily(
            PREFIX + "metrics_series_dropped",
            "Series left out of this exposition because their family has more than SIDECAR_METRICS_MAX_SERIES; "
            "listed from a family's first cut on.",
            labels=("model", "family"),
        )
        for name, n in cut.items():
            family.add_metric((self.model, name), n)
        yield family


def cap_series(family: Metric, max_series: int) -> tuple[Metric, int]:
    """``family`` with its first ``max_series`` series (a copy when any is cut), and how many were cut."""
    if len(family.samples) <= max_series:
        return family, 0  # every series has a sample at least: nothing to count
    kept: dict[tuple[tuple[str, str], ...], bool] = {}
    samples = []
    for sample in family.samples:
        series = tuple(item for item in sample.labels.items() if item[0] not in _SERIES_PARTS)
        keep = kept.get(series)
        if keep is None:
            keep = kept[series] = len(kept) < max_series
        if keep:
            samples.append(sample)
    dropped = len(kept) - max_series
    if dropped <= 0:
        return family, 0
    capped = copy.copy(family)
    capped.samples = samples
    return capped, dropped
