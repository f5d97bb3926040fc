"""Payload cardinality: no payload grows the learned reference, the sidecar's memory or /metrics without bound.

The attack (issue 14, item 2): without ``SIDECAR_REFERENCE_PATH`` the first
records decide the learned reference's features, so 100 requests carrying
100,000 distinct keys gave 100,000 features, a 93 MB ``/metrics`` that took
16 s to scrape, and 2.5 GB of RSS. After the reference is frozen, 100,000
distinct categories of a known feature must fold into its other bucket.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from sidecar.monitoring.learning import CATEGORY_CHARS, NAME_CHARS, LeftOut, ReferenceLearner
from sidecar.prometheus import CappedRegistry
from sidecar.records import PredictionRecord
from sidecar.reference import OTHER
from tests.drift.helpers import numeric, profile
from tests.http import raw_request, scrape
from tests.records import make_record
from tests.servers import read_body, run_server, run_sidecar, serve_process

Scope = dict[str, Any]
FEATURES = ["income", "age", "country"]
# Bounds of the end-to-end attack, an order of magnitude inside what it did before the fix.
METRICS_MAX_BYTES = 2 << 20
SCRAPE_MAX_SECONDS = 2.0
RSS_MAX_BYTES = 400 << 20


def _legit(rng: random.Random, country: str | None = None) -> dict[str, Any]:
    return {
        "income": round(rng.gauss(50.0, 10.0), 3),
        "age": round(rng.gauss(40.0, 12.0), 3),
        "country": country if country is not None else rng.choice(("DE", "FR", "US")),
    }


def _junk(request: int, keys: int = 1000) -> dict[str, float]:
    """One row of the flood: ``keys`` names never sent before, nor again."""
    return {f"k{request}_{i}": 1.0 for i in range(keys)}


def _records(rows: Iterable[dict[str, Any]]) -> list[PredictionRecord]:
    return [make_record(features=row, prediction=1, confidence=0.7) for row in rows]


# The learner


def test_a_flood_of_distinct_keys_learns_only_the_real_features() -> None:
    rng = random.Random(1)
    learner = ReferenceLearner(target=200, bins=10, max_features=10)
    tracemalloc.start()
    try:
        for request in range(100):  # 100 rows of 1,000 fresh keys each, between the real rows
            learner.add(_records([_junk(request)]))
            learner.add(_records([_legit(rng)]))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    learned = learner.build()
    assert list(learned.profile.features) == FEATURES
    assert learned.left_out.as_dict() == {"rare": pytest.approx(100_000, rel=1e-3), "long_name": 0, "max_features": 0}
    assert learned.profile.source["left_out"] == learned.left_out.as_dict()
    # What the learner holds after the flood: the real rows' values and at most 10 junk ones per row
    # (about 100 KB), not 100,000 junk ones (8 MB before the bound).
    assert held < 1 << 20


def test_a_key_needs_a_real_share_of_the_rows_and_the_most_frequent_are_kept() -> None:
    # 1,000 rows: a key needs 1% of them, 10 rows.
    rows: list[dict[str, Any]] = [{"always": 1.0} for _ in range(1000)]
    for name, count in (("half", 500), ("tenth", 100), ("ten", 10), ("nine", 9), ("once", 1)):
        for row in rows[:count]:
            row[name] = 2.0
    learner = ReferenceLearner(target=1000, bins=10, max_features=3)
    assert learner.add(_records(rows))
    assert learner.select() == (["always", "half", "tenth"], LeftOut(rare=2, long_name=0, max_features=1))
    # A small warm-up still asks for 5 rows.
    small = ReferenceLearner(target=10, bins=10, max_features=10)
    small.add(_records({"x": 1.0, "five": 1.0, "four": 1.0} for _ in range(4)))
    small.add(_records([{"x": 1.0, "five": 1.0}, *[{"x": 1.0}] * 5]))
    assert small.select() == (["x", "five"], LeftOut(rare=1))


def test_features_keep_the_order_traffic_showed_them_in() -> None:
    learner = ReferenceLearner(target=20, bins=10, max_features=10)
    learner.add(_records([{"b": 1.0, "a": 1.0}] * 10 + [{"c": 1.0, "b": 1.0, "a": 1.0}] * 10))
    assert learner.select() == (["b", "a", "c"], LeftOut())


def test_long_names_are_no_features_and_long_values_fold_into_other() -> None:
    long_name = "n" * (NAME_CHARS + 1)
    blob = "v" * (CATEGORY_CHARS + 1)
    rows = [
        {"fine": 1.0, long_name: 1.0, "blob": blob if i % 2 else "short", "listed": list(range(CATEGORY_CHARS))}
        for i in range(100)
    ]
    learner = ReferenceLearner(target=100, bins=10, max_features=10)
    learner.add(_records(rows))
    learned = learner.build()
    features = learned.profile.features
    assert list(features) == ["fine", "blob", "listed"]
    assert learned.left_out == LeftOut(long_name=1)
    # The long values are in the other bucket, where live traffic puts them: never a category.
    assert features["blob"].categories == ("short",)
    assert features["blob"].ratios == pytest.approx((0.5, 0.5))
    assert features["listed"].categories == ()
    assert features["blob"].bin_of(blob) == features["blob"].bins - 1


def test_memory_is_bounded_by_max_features_whatever_the_rows_carry() -> None:
    # Every row carries the same 2,000 keys: all frequent, all short, only 2 x max_features are held.
    row = {f"key{i}": float(i) for i in range(2000)}
    learner = ReferenceLearner(target=100, bins=10, max_features=10)
    tracemalloc.start()
    try:
        learner.add(_records([row] * 100))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    features, left_out = learner.select()
    # The first keys in the rows' order are followed throughout; the room left churns among the next ones.
    assert features == [f"key{i}" for i in range(10)]
    assert left_out.max_features > 0
    assert left_out.rare + left_out.max_features + len(features) == pytest.approx(2000, abs=10)
    # 100 rows x 20 values (tens of KB), not 100 x 2,000 (about 8 MB before the bound).
    assert held < 1 << 20


# The registry's series cap


class _Wide(Collector):
    """A counter and a histogram with ``n`` series each, and a counter with one."""

    def __init__(self, n: int) -> None:
        self.n = n

    def collect(self) -> Iterable[Metric]:
        counter = CounterMetricFamily("mlsidecar_wide", "Wide.", labels=("model", "key"))
        histogram = HistogramMetricFamily("mlsidecar_spread", "Spread.", labels=("model", "key"))
        for i in range(self.n):
            counter.add_metric(("m", f"k{i}"), i)
            histogram.add_metric(("m", f"k{i}"), [("1", 1.0), ("+Inf", 2.0)], sum_value=3.0)
        small = CounterMetricFamily("mlsidecar_small", "Small.", labels=("model",))
        small.add_metric(("m",), 1.0)
        return [counter, histogram, small]


def _families(registry: CappedRegistry) -> dict[str, list[Any]]:
    text = generate_latest(registry).decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_the_registry_serves_at_most_max_series_per_family_and_counts_the_cut() -> None:
    wide = _Wide(50)
    registry = CappedRegistry("m", max_series=10)
    registry.register(wide)
    families = _families(registry)
    assert [s.labels["key"] for s in families["mlsidecar_wide"]] == [f"k{i}" for i in range(10)]
    # A histogram's series are cut whole: each kept one has its buckets, count and sum.
    spread = families["mlsidecar_spread"]
    assert len(spread) == 10 * 4
    assert {s.labels["key"] for s in spread} == {f"k{i}" for i in range(10)}
    assert [s.value for s in families["mlsidecar_small"]] == [1.0]
    dropped = {s.labels["family"]: s.value for s in families["mlsidecar_metrics_series_dropped"]}
    assert dropped == {"mlsidecar_wide_total": 40.0, "mlsidecar_spread": 40.0}
    assert all(s.labels["model"] == "m" for s in families["mlsidecar_metrics_series_dropped"])
    # Once the families fit again they stay listed, at 0.
    wide.n = 5
    dropped = {s.labels["family"]: s.value for s in _families(registry)["mlsidecar_metrics_series_dropped"]}
    assert dropped == {"mlsidecar_wide_total": 0.0, "mlsidecar_spread": 0.0}
    # A cut exposition is still a valid one.
    wide.n = 50
    promtool = shutil.which("promtool")
    assert promtool
    result = subprocess.run([promtool, "check", "metrics"], input=generate_latest(registry), capture_output=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, b"")


# End to end, over the proxy port of a real sidecar


async def scorer(scope: Scope, receive: Any, send: Any) -> None:
    """A KServe V1 model answering [P(0), P(1)] for each instance."""
    instances = orjson.loads(await read_body(receive))["instances"]
    payload = orjson.dumps({"predictions": [[0.3, 0.7]] * len(instances)})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _predict(port: int, rows: list[dict[str, Any]]) -> None:
    body = orjson.dumps({"instances": rows})
    response = await raw_request(port, "POST", "/v1/models/credit:predict", body=body)
    assert response.status == 200, response


async def _drift(admin: int) -> dict[str, Any]:
    response = await raw_request(admin, "GET", "/api/v1/drift")
    assert response.status == 200
    drift: dict[str, Any] = orjson.loads(response.body)
    return drift


async def _until(check: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


@pytest.mark.anyio
async def test_a_flood_of_keys_then_of_categories_leaves_metrics_and_memory_bounded() -> None:
    rng = random.Random(7)
    env = {
        "SIDECAR_LOG_SINK": "none",
        "SIDECAR_REFERENCE_WARMUP": "200",
        "SIDECAR_EVAL_INTERVAL_SECONDS": "0.2",
        "SIDECAR_MODEL_NAME": "credit",
    }
    async with run_server(scorer) as upstream, serve_process(f"http://127.0.0.1:{upstream}", env) as sidecar:
        process, proxy, admin = sidecar
        peak = 0

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, _rss(process.pid))
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample())
        try:
            # Warm-up: 100 requests of 1,000 keys never seen again (100,000 in all), between real rows.
            for request in range(100):
                await _predict(proxy, [_junk(request)])
                if request % 10 == 0:
                    await _predict(proxy, [_legit(rng) for _ in range(10)])

            async def learned() -> bool:
                return bool((await _drift(admin))["reference"]["source"] == "learned")

            await _until(learned)
            reference = (await _drift(admin))["reference"]
            # Then 100 requests of 1,000 rows, each with a country never seen before and a key never
            # seen before (100,000 of each in all).
            for request in range(100):
                await _predict(proxy, [{**_legit(rng, f"c{request}_{i}"), f"x{request}_{i}": 1} for i in range(1000)])

            async def counted() -> bool:
                metrics = await scrape(admin)
                return metrics['mlsidecar_quality_records_total{model="credit"}'] >= 100_200

            await _until(counted)
            started = time.monotonic()
            response = await raw_request(admin, "GET", "/metrics")
            scraped = time.monotonic() - started
            drift = await _drift(admin)
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
    assert reference["left_out"] == {"rare": pytest.approx(100_000, rel=1e-3), "long_name": 0, "max_features": 0}
    assert [feature["name"] for feature in drift["drift"]["features"]] == FEATURES
    families = {f.name: f.samples for f in text_string_to_metric_families(response.body.decode())}
    left_out = {s.labels["reason"]: s.value for s in families["mlsidecar_reference_features_left_out"]}
    assert left_out == {"rare": reference["left_out"]["rare"], "long_name": 0.0, "max_features": 0.0}
    # The new countries are one bin, the other bucket, among the reference's few.
    bins = {s.labels["bin"] for s in families["mlsidecar_feature_bin_observations"] if s.labels["feature"] == "country"}
    assert bins == {"DE", "FR", "US", OTHER}
    # The new keys are counted under __unexpected__, never as labels of their own.
    quality = {s.labels["feature"]: s.value for s in families["mlsidecar_data_quality_violations"]}
    assert set(quality) == {*FEATURES, "__unexpected__", "__all__"}
    assert quality["__unexpected__"] >= 100_000
    assert len(response.body) < METRICS_MAX_BYTES
    assert scraped < SCRAPE_MAX_SECONDS
    assert peak < RSS_MAX_BYTES


@pytest.mark.anyio
async def test_a_family_past_the_series_cap_is_cut_and_counted(tmp_path: Path) -> None:
    # 30 features: 300 series of each bin family (10 bins) and 184 quality series, past a cap of 100.
    rng = np.random.default_rng(3)
    reference = tmp_path / "reference.json"
    reference.write_bytes(profile({f"x{i}": numeric(rng.normal(0.0, 1.0, 1_000)) for i in range(30)}).dumps())
    env = {"SIDECAR_REFERENCE_PATH": str(reference), "SIDECAR_METRICS_MAX_SERIES": "100"}
    async with run_sidecar("http://127.0.0.1:9", env) as sidecar:
        metrics = await scrape(sidecar.admin_port)
    dropped = {k: v for k, v in metrics.items() if k.startswith("mlsidecar_metrics_series_dropped{")}
    assert dropped == {
        'mlsidecar_metrics_series_dropped{family="mlsidecar_feature_bin_observations_total",model="model"}': 200.0,
        'mlsidecar_metrics_series_dropped{family="mlsidecar_feature_reference_bin_ratio",model="model"}': 200.0,
        'mlsidecar_metrics_series_dropped{family="mlsidecar_data_quality_violations_total",model="model"}': 84.0,
    }
    ratios = [k for k in metrics if k.startswith("mlsidecar_feature_reference_bin_ratio{")]
    assert len(ratios) == 100
