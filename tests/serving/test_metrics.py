"""The proxy's request metrics: batched counting gives what counting one request at a time would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, generate_latest

from sidecar.serving.metrics import LATENCY_BUCKETS, SIZE_BUCKETS, Histogram, ProxyMetrics


def test_batches_count_into_the_same_buckets_as_single_observations() -> None:
    rng = random.Random(7)
    metrics = ProxyMetrics("m", ("primary", "fallback"))
    expected = {name: Histogram(LATENCY_BUCKETS) for name in ("primary", "fallback", "upstream")}
    sizes = Histogram(SIZE_BUCKETS)
    # Bucket bounds themselves included: "le" means a value on a bound counts in it.
    values = [*LATENCY_BUCKETS, 0.0, 31.0] + [rng.uniform(0, 2) for _ in range(2500)]
    for i, value in enumerate(values):
        variant = "fallback" if i % 7 == 0 else "primary"
        upstream = None if i % 5 == 0 else value / 2
        size = int(SIZE_BUCKETS[i % len(SIZE_BUCKETS)]) + (i % 3) - 1
        metrics.record(metrics.routes[variant], 200 + i % 3, value, upstream, size, size)
        expected[variant].observe(value)
        if upstream is not None and variant == "primary":
            expected["upstream"].observe(upstream)
        sizes.observe(size)
    primary, fallback = metrics.routes["primary"], metrics.routes["fallback"]
    assert primary.duration.counts == expected["primary"].counts
    assert fallback.duration.counts == expected["fallback"].counts
    assert primary.upstream_duration.counts == expected["upstream"].counts
    assert abs(primary.duration.sum - expected["primary"].sum) < 1e-9
    assert metrics.request_size.counts == metrics.response_size.counts == sizes.counts
    assert metrics.request_size.sum == sizes.sum
    assert sum(primary.codes.values()) + sum(fallback.codes.values()) == len(values)


def test_reading_or_scraping_counts_the_requests_held() -> None:
    metrics = ProxyMetrics("m", ("primary",))
    route = metrics.routes["primary"]
    metrics.record(route, 503, 0.002, None, 10, 20)
    assert route.codes == {503: 1}
    metrics.record(route, 200, 0.002, 0.001, 10, 20)
    registry = CollectorRegistry()
    registry.register(metrics)
    text = generate_latest(registry).decode()
    assert 'mlsidecar_requests_total{code="200",model="m",variant="primary"} 1.0' in text
    assert 'mlsidecar_upstream_duration_seconds_count{model="m",variant="primary"} 1.0' in text
    assert 'mlsidecar_request_size_bytes_sum{model="m"} 20.0' in text
