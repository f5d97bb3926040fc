"""Layer-1 (infrastructure) metrics of the proxy, served from an explicit registry.

The request path appends five numbers per finished request to a list; they
are counted into plain Python ints and floats in preallocated slots, a batch
at a time with numpy, when ``/metrics`` is scraped, when someone reads the
counts, or when the list is long. A custom :class:`Collector` turns them
into metric families. prometheus_client's own ``Histogram.observe`` takes a
lock and walks the buckets for every sample, which costs several microseconds
a request across four histograms; even ``bisect`` into lists, four per
request, was about 4% of the proxy's instructions per request. No lock is
needed: the proxy and the admin app share one event loop thread, so a scrape
never interleaves with an update.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.prometheus import PREFIX, counter_by

__all__ = [
    "LATENCY_BUCKETS",
    "SIZE_BUCKETS",
    "PROXY_ERROR_REASONS",
    "Histogram",
    "RouteMetrics",
    "ProxyMetrics",
    "RouteCounts",
    "ServingCounts",
]

# Seconds. Model servers answer in 1 ms (a linear model) to several seconds (a
# large generative one), so the buckets span four decades.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# Bytes, powers of four from 64 B to 64 MiB.
SIZE_BUCKETS: tuple[float, ...] = tuple(float(64 * 4**i) for i in range(11))

PROXY_ERROR_REASONS: tuple[str, ...] = ("connect", "timeout", "protocol", "pool", "client_stall")

# Finished requests held before they are counted: bounds the memory held and
# the work of one flush, and is large enough that numpy's per-call cost is
# shared by many requests.
_FLUSH_AT = 1024


class BucketCounts(Protocol):
    @property
    def counts(self) -> Sequence[int]: ...


class RouteCounts(Protocol):
    """What readers of one route's counters need: status codes and request durations."""

    @property
    def codes(self) -> Mapping[int, int]: ...

    @property
    def duration(self) -> BucketCounts: ...


class ServingCounts(Protocol):
    """The Layer-1 counters as their readers see them, by variant.

    :class:`ProxyMetrics` in the serving process, and its once-a-second
    mirror in the monitoring process (:class:`sidecar.plane.mirror.ServingMirror`),
    so that the alert signals and the status page read either the same way.
    """

    @property
    def routes(self) -> Mapping[str, RouteCounts]: ...


class Histogram:
    """Non-cumulative bucket counts; made cumulative only at exposition.

    Usage::

        h = Histogram((0.1, 1.0))
        h.observe(0.5)
        h.cumulative()  # [("0.1", 0), ("1.0", 1), ("+Inf", 1)]
    """

    __slots__ = ("bounds", "counts", "sum", "_edges")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self._edges = np.array(self.bounds, dtype=np.float64)

    def observe(self, value: float) -> None:
        # bisect_left gives the first bound >= value, which is Prometheus' "le".
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_many(self, values: np.ndarray) -> None:
        """:meth:`observe` for each value, in one pass: side="left" is bisect_left."""
        if not len(values):
            return
        per_bucket = np.bincount(np.searchsorted(self._edges, values, side="left"), minlength=len(self.counts))
        counts = self.counts
        for i, n in enumerate(per_bucket.tolist()):
            counts[i] += n
        # numpy's pairwise sum: within 1e-15 of the exact one for a batch, and a
        # twentieth of math.fsum's cost, which was most of counting a batch.
        self.sum += float(values.sum())

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip([*map(repr, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class RouteMetrics:
    """Counters for one (model, variant): the unit the proxy updates per request.

    Reading ``codes``, ``duration`` or ``upstream_duration`` first counts the
    requests the owning :class:`ProxyMetrics` still holds, so readers such
    as the alert signals always see every finished request.
    """

    __slots__ = ("_codes", "_duration", "_upstream_duration", "_flush", "pending")

    def __init__(self, flush: Callable[[], None] | None = None) -> None:
        # Keyed by status code: bounded by HTTP itself (100-599), not by payloads.
        self._codes: dict[int, int] = {}
        self._duration = Histogram(LATENCY_BUCKETS)
        self._upstream_duration = Histogram(LATENCY_BUCKETS)
        self._flush = flush
        # Finished requests not yet counted, flat, five numbers each: status,
        # duration, upstream duration (None without an answer), request and
        # response size. Flat, so that numpy reads it in one call.
        self.pending: list[float | None] = []

    @property
    def codes(self) -> dict[int, int]:
        if self._flush is not None:
            self._flush()
        return self._codes

    @property
    def duration(self) -> Histogram:
        if self._flush is not None:
            self._flush()
        return self._duration

    @property
    def upstream_duration(self) -> Histogram:
        if self._flush is not None:
            self._flush()
        return self._upstream_duration

    def _count_pending(self) -> np.ndarray | None:
        """Count the held requests into this route's metrics; return their sizes (two columns) for the shared ones."""
        pending = self.pending
        if not pending:
            return None
        self.pending = []
        # None (no answer from the upstream) becomes NaN.
        table = np.array(pending, dtype=np.float64).reshape(-1, 5)
        codes = self._codes
        statuses, counts = np.unique(table[:, 0], return_counts=True)
        for status, n in zip(statuses.tolist(), counts.tolist(), strict=True):
            codes[int(status)] = codes.get(int(status), 0) + n
        self._duration.observe_many(table[:, 1])
        upstream = table[:, 2]
        self._upstream_duration.observe_many(upstream[~np.isnan(upstream)])
        return table[:, 3:]


class ProxyMetrics(Collector):
    """The proxy's request metrics, as the README's "Metrics" table names them.

    Usage::

        registry = CollectorRegistry()
        metrics = ProxyMetrics("iris", ("primary",))
        registry.register(metrics)
        metrics.record(metrics.routes["primary"], 200, 0.004, 0.003, 512, 128)  # once per finished request
    """

    def __init__(self, model: str, variants: Sequence[str]) -> None:
        self.model = model
        # Variants come from configuration, so every child exists from start-up.
        self.routes = {variant: RouteMetrics(self.flush) for variant in variants}
        self.errors = dict.fromkeys(PROXY_ERROR_REASONS, 0)
        self.in_flight = 0
        self.request_size = Histogram(SIZE_BUCKETS)
        self.response_size = Histogram(SIZE_BUCKETS)
        # None until the first request: a zero would read as "stale since 1970".
        self.last_request_time: float | None = None

    def record(
        self,
        route: RouteMetrics,
        status: int,
        duration: float,
        upstream_duration: float | None,
        request_size: int,
        response_size: int,
    ) -> None:
        """One finished request: held, and counted with the others of its batch by :meth:`flush`."""
        pending = route.pending
        pending += (status, duration, upstream_duration, request_size, response_size)
        if len(pending) >= _FLUSH_AT * 5:
            self.flush()

    def flush(self) -> None:
        """Count the requests :meth:`record` holds."""
        for route in self.routes.values():
            sizes = route._count_pending()
            if sizes is not None:
                self.request_size.observe_many(sizes[:, 0])
                self.response_size.observe_many(sizes[:, 1])

    def collect(self) -> Iterable[Metric]:
        self.flush()
        model = self.model
        requests = CounterMetricFamily(
            PREFIX + "requests_total",
            "Requests proxied, by the status code the client received (499: the client went away first).",
            labels=("model", "variant", "code"),
        )
        duration = HistogramMetricFamily(
            PREFIX + "request_duration_seconds",
            "Latency the client sees, from the first request byte to the last response byte.",
            labels=("model", "variant"),
        )
        upstream = HistogramMetricFamily(
            PREFIX + "upstream_duration_seconds",
            "Time the model server took, from sending the request to the end of its response.",
            labels=("model", "variant"),
        )
        for variant, route in self.routes.items():
            for code, n in sorted(route.codes.items()):
                requests.add_metric((model, variant, str(code)), n)
            for family, hist in ((duration, route.duration), (upstream, route.upstream_duration)):
                family.add_metric((model, variant), hist.cumulative(), hist.sum)
        yield requests
        yield duration
        yield upstream

        yield counter_by(
            "proxy_errors_total",
            (
                "Requests the proxy could not complete: connect (502), timeout (504), protocol (502), "
                "pool (503: every upstream connection busy past the pool timeout), "
                "client_stall (the client read nothing for the send timeout; dropped, counted as 499)."
            ),
            model,
            "reason",
            self.errors,
        )

        in_flight = GaugeMetricFamily(PREFIX + "requests_in_flight", "Requests being proxied now.", labels=("model",))
        in_flight.add_metric((model,), self.in_flight)
        yield in_flight
        for name, hist, what in (
            ("request_size_bytes", self.request_size, "Request body sizes"),
            ("response_size_bytes", self.response_size, "Response body sizes"),
        ):
            family = HistogramMetricFamily(PREFIX + name, what + " in bytes.", labels=("model",))
            family.add_metric((model,), hist.cumulative(), hist.sum)
            yield family

        last = GaugeMetricFamily(
            PREFIX + "last_request_timestamp_seconds",
            "Unix time of the latest proxied request; absent until the first one.",
            labels=("model",),
        )
        if self.last_request_time is not None:
            last.add_metric((model,), self.last_request_time)
        yield last
