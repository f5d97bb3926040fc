"""The capture worker: exchanges in, records out to the sinks and, a batch at a time, to subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest
from prometheus_client import CollectorRegistry

from sidecar.capture.handoff import Capture
from sidecar.capture.worker import CaptureWorker
from sidecar.records import Exchange, PredictionRecord
from sidecar.sampling import RandomSampler
from sidecar.sinks import LogBatch, Sink
from tests.capture.workers import kserve_worker

pytestmark = pytest.mark.anyio

JSON = [(b"content-type", b"application/json")]


def exchange(request_id: str, instances: object, predictions: object = None) -> Exchange:
    response = orjson.dumps({"predictions": [0] if predictions is None else predictions})
    return Exchange(
        request_id=request_id,
        timestamp=1_764_144_638.0,
        method="POST",
        path="/v1/models/iris:predict",
        request_headers=JSON,
        request_body=orjson.dumps({"instances": instances}),
        status_code=200,
        response_headers=JSON,
        response_body=response,
        latency_seconds=0.002,
        variant="primary",
        strategy="random",
        probability=0.5,
    )


class ListSink(Sink):
    name = "list"

    def __init__(self) -> None:
        super().__init__(queue_size=1_000)
        self.batches: list[LogBatch] = []

    def offer(self, batch: LogBatch) -> None:
        self.batches.append(batch)

    async def _run(self) -> None:
        await asyncio.sleep(0)

    async def _release(self, deadline: float) -> None:
        await asyncio.sleep(0)


def errors(worker: CaptureWorker) -> dict[str, float | None]:
    """``mlsidecar_monitor_errors_total`` by stage, read through a registry as a scrape reads it."""
    registry = CollectorRegistry()
    registry.register(worker.metrics.errors)
    name = "mlsidecar_monitor_errors_total"
    return {
        stage: registry.get_sample_value(name, {"model": "iris", "stage": stage}) for stage in ("process", "subscriber")
    }


def make_worker(sink: Sink) -> CaptureWorker:
    capture = Capture(RandomSampler(0.5), model="iris", max_bytes=1 << 20, queue_size=100)
    return kserve_worker(capture, [sink], feature_names=("x",))


async def test_subscribers_get_every_exchange_of_a_batch_in_one_call_and_sinks_one_batch_each() -> None:
    sink = ListSink()
    worker = make_worker(sink)
    calls: list[Sequence[PredictionRecord]] = []
    worker.subscribe(calls.append)
    worker.process(
        [
            exchange("a", [[1.0], [2.0]], [1, 0]),
            exchange("unreadable", "not a list"),  # a parse_error: counted, and the others go on
            exchange("b", [[3.0]], [1]),
        ]
    )
    [records] = calls
    assert [(r.request_id, r.row, r.features, r.prediction) for r in records] == [
        ("a", 0, {"x": 1.0}, 1),
        ("a", 1, {"x": 2.0}, 0),
        ("b", 0, {"x": 3.0}, 1),
    ]
    assert {(r.model_name, r.variant, r.status_code, r.strategy, r.probability) for r in records} == {
        ("iris", "primary", 200, "random", 0.5)
    }
    assert records[0].latency_ms == pytest.approx(2.0)
    assert [(b.request_id, len(b.lines)) for b in sink.batches] == [("a", 2), ("b", 1)]
    assert worker.capture.metrics.dropped["parse_error"] == 1
    assert worker.capture.metrics.captured == 2


async def test_a_failing_subscriber_spares_the_others() -> None:
    worker = make_worker(ListSink())
    seen: list[PredictionRecord] = []

    def broken(records: Sequence[PredictionRecord]) -> None:
        raise RuntimeError("bug")

    worker.subscribe(broken)
    worker.subscribe(seen.extend)
    worker.process([exchange("a", [[1.0]]), exchange("b", [[2.0]])])
    assert [r.request_id for r in seen] == ["a", "b"]
    assert errors(worker) == {"process": 0, "subscriber": 1}


async def test_an_exchange_that_trips_a_bug_is_counted_and_spares_the_others() -> None:
    class BrokenSink(ListSink):
        def offer(self, batch: LogBatch) -> None:
            if batch.request_id == "bad":
                raise RuntimeError("bug")
            super().offer(batch)

    sink = BrokenSink()
    worker = make_worker(sink)
    seen: list[PredictionRecord] = []
    worker.subscribe(seen.extend)
    assert errors(worker) == {"process": 0, "subscriber": 0}  # bound at start-up: exposed before any fault
    worker.process([exchange("bad", [[1.0]]), exchange("good", [[2.0]])])
    assert [r.request_id for r in seen] == ["good"]
    assert [b.request_id for b in sink.batches] == ["good"]
    assert errors(worker) == {"process": 1, "subscriber": 0}
