"""What a non-2xx exchange feeds: the prediction log, never drift, quality, performance or the prediction store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from sidecar.capture.handoff import Capture
from sidecar.drift import DriftTracker
from sidecar.records import PredictionRecord
from sidecar.sampling import RandomSampler
from sidecar.sinks.files import FileSink
from sidecar.store import LabelItem, PredictionStore
from tests.capture.workers import kserve_worker
from tests.drift.helpers import numeric, profile
from tests.waiting import wait_until

# These tests read the monitoring objects themselves (subscribers, snapshots, the store, the sinks), which
# in the default process mode live in the monitoring process (tests/plane covers that path end to end).
pytestmark = [pytest.mark.anyio, pytest.mark.monitoring_inline]

JSON = [(b"content-type", b"application/json")]


def submit(capture: Capture, request_id: str, x: float, status: int, response: bytes) -> None:
    """One exchange through the hand-off, as the proxy submits it once the client has its response."""
    capture.submit(
        request_id=request_id,
        request_id_generated=False,
        timestamp=time.time(),
        method="POST",
        path="/v1/models/iris:predict",
        request_headers=JSON,
        request_body=orjson.dumps({"instances": [[x]]}),
        status_code=status,
        response_headers=JSON,
        response_body=response,
        latency_seconds=0.003,
        variant="primary",
        probability=1.0,
    )


async def test_a_5xx_exchange_is_logged_with_its_status_and_features_and_feeds_no_monitor(tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    sink = FileSink(str(log), queue_size=100, max_bytes=0, backups=0)
    store = PredictionStore(tmp_path)
    capture = Capture(RandomSampler(1.0), model="iris", max_bytes=1 << 20, queue_size=100)
    worker = kserve_worker(capture, [sink], feature_names=("x",))
    reference = profile({"x": numeric(np.random.default_rng(3).normal(0.0, 1.0, 1_000))})
    drift = DriftTracker(reference, window_seconds=60, slice_seconds=60, min_samples=1)
    received: list[PredictionRecord] = []

    def record(records: Sequence[PredictionRecord]) -> None:
        received.extend(records)

    worker.subscribe(drift.update)
    worker.subscribe(store.add)
    worker.subscribe(record)
    await sink.start()
    await store.start()
    task = asyncio.create_task(worker.run())
    try:
        submit(capture, "ok", -2.5, 200, orjson.dumps({"predictions": [1]}))
        submit(capture, "failed", 2.5, 501, orjson.dumps({"error": "not implemented"}))
        submit(capture, "unavailable", 2.5, 503, b"upstream down")
        await wait_until(lambda: capture.queue.empty() and capture.metrics.captured == 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    loop = asyncio.get_running_loop()
    await worker.drain(loop.time() + 5.0)  # closes the sink: every line is in the file

    # The prediction log keeps every exchange: the error's status and features, and no prediction.
    lines = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    assert [(line["request_id"], line["status_code"], line["features"], line["prediction"]) for line in lines] == [
        ("ok", 200, {"x": -2.5}, 1),
        ("failed", 501, {"x": 2.5}, None),
        ("unavailable", 503, {"x": 2.5}, None),
    ]
    # The subscribers see the 2xx exchange alone: drift counts one value, in the lowest bin, not the highest.
    assert [(r.request_id, r.status_code) for r in received] == [("ok", 200)]
    counted = [total for source, name, _, total in drift.bin_observations() if (source, name) == ("feature", "x")]
    assert counted == [1.0] + [0.0] * 9
    # The prediction store has no row for the error, so a label sent for it joins nothing.
    outcomes = await store.attach_labels([LabelItem("ok", None, 1), LabelItem("failed", None, 1)])
    assert [outcome.kind for outcome in outcomes] == ["joined", "unmatched"]
    await store.close(loop.time() + 5.0)
    assert capture.metrics.dropped == {
        "queue_full": 0,
        "too_large": 0,
        "parse_error": 0,
        "error": 0,
        "monitor_restart": 0,
    }
    registry = CollectorRegistry()
    registry.register(worker.metrics.errors)
    for stage in ("process", "subscriber"):
        assert registry.get_sample_value("mlsidecar_monitor_errors_total", {"model": "iris", "stage": stage}) == 0


@pytest.mark.parametrize("status", [199, 204, 299, 302, 404, 500])
async def test_only_2xx_reaches_the_subscribers(status: int) -> None:
    capture = Capture(RandomSampler(1.0), model="iris", max_bytes=1 << 20, queue_size=100)
    worker = kserve_worker(capture)
    received: list[PredictionRecord] = []
    worker.subscribe(received.extend)
    submit(capture, "one", 1.0, status, b"")
    worker.process(capture.queue.get_nowait(64))
    assert capture.metrics.captured == 1  # kept by the sampler and logged, whatever the status
    assert [r.status_code for r in received] == ([status] if 200 <= status < 300 else [])
