"""The capture worker: exchanges in, records out to the sinks and, a batch at a time, to subscribers."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Sequence

import orjson
import pytest
from prometheus_client import CollectorRegistry

from sidecar.capture.handoff import Capture
from sidecar.capture.privacy import Anonymizer
from sidecar.capture.worker import CaptureWorker
from sidecar.plane.frames import EXCHANGES, encode
from sidecar.protocols import AdapterOptions
from sidecar.records import Exchange, PredictionRecord
from sidecar.sampling import RandomSampler
from sidecar.sinks import LogBatch, Sink
from sidecar.syntax.sampling import SourceKind
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


def experiment_worker(segment_by: tuple[SourceKind, str], anonymizer: Anonymizer | None = None) -> CaptureWorker:
    """A KServe V1 worker for an experiment's records, its segments read by ``segment_by``."""
    capture = Capture(RandomSampler(1.0), model="iris", max_bytes=1 << 20, queue_size=100)
    return CaptureWorker(
        capture,
        AdapterOptions(protocol="kserve-v1"),
        anonymizer or Anonymizer((), "hash"),
        [],
        model_name="iris",
        model_version=None,
        version_header=b"x-model-version",
        segment_by=segment_by,
    )


def routed(
    request_id: str, instances: object, unit: str | None, headers: Sequence[tuple[bytes, bytes]] = ()
) -> Exchange:
    """An exchange the proxy routed by ``unit`` (None: by a coin), with extra request ``headers``."""
    return exchange(request_id, instances)._replace(request_headers=[*JSON, *headers], variant="treatment", unit=unit)


async def test_records_carry_the_unit_and_a_header_segment() -> None:
    worker = experiment_worker(("header", "x-country"))
    seen: list[PredictionRecord] = []
    worker.subscribe(seen.extend)
    worker.process(
        [
            routed("a", [{"x": 1.0}, {"x": 2.0}], "u-1", [(b"x-country", "Åland".encode())]),
            routed("b", [{"x": 3.0}], None, [(b"x-country", b"fr")]),  # a coin routed it: no unit
            routed("c", [{"x": 4.0}], "u-2", [(b"x-country", b"")]),  # an empty header is no segment
        ]
    )
    assert [(r.request_id, r.row, r.variant, r.unit, r.segment) for r in seen] == [
        ("a", 0, "treatment", "u-1", "Åland"),
        ("a", 1, "treatment", "u-1", "Åland"),
        ("b", 0, "treatment", None, "fr"),
        ("c", 0, "treatment", "u-2", None),
    ]


async def test_a_feature_segment_is_each_rows_and_never_holds_what_anonymisation_took_out() -> None:
    rows = [{"country": "fr", "x": 1.0}, {"country": 7, "x": 2.0}, {"x": 3.0}, {"country": True, "x": 4.0}]
    worker = experiment_worker(("feature", "country"))
    seen: list[PredictionRecord] = []
    worker.subscribe(seen.extend)
    worker.process([routed("a", rows, "u-1")])
    # As unit_text renders each value: a number by its digits; absent, or a boolean, is no segment.
    assert [(r.unit, r.segment) for r in seen] == [("u-1", "fr"), ("u-1", "7"), ("u-1", None), ("u-1", None)]

    hashed = experiment_worker(("feature", "country"), Anonymizer(("country",), "hash", salt="s" * 32))
    dropped = experiment_worker(("feature", "country"), Anonymizer(("country",), "drop"))
    for anonymised in (hashed, dropped):
        records: list[PredictionRecord] = []
        anonymised.subscribe(records.extend)
        anonymised.process([routed("a", rows[:1], "u-1")])
        assert [r.segment for r in records] == [records[0].features.get("country")]
        assert records[0].segment != "fr"


async def test_records_outside_an_experiment_have_no_unit_or_segment() -> None:
    worker = make_worker(ListSink())
    seen: list[PredictionRecord] = []
    worker.subscribe(seen.extend)
    worker.process([exchange("a", [[1.0]])._replace(request_headers=[*JSON, (b"x-country", b"fr")])])
    assert [(r.unit, r.segment) for r in seen] == [(None, None)]


def test_an_exchanges_unit_crosses_the_monitor_link() -> None:
    # The serving process pickles exchanges to the monitoring process (sidecar.plane.frames): the unit goes too.
    sent = routed("a", [[1.0]], "émile")
    frame = encode((EXCHANGES, [sent, exchange("b", [[2.0]])]))
    message = pickle.loads(frame[4:])
    assert message == (EXCHANGES, [sent, exchange("b", [[2.0]])])
    assert [e.unit for e in message[1]] == ["émile", None]


def shadow_answer(request_id: str) -> Exchange:
    """A shadow challenger's answer as the tap hands it over (sidecar.experiments.tap): not served traffic."""
    return exchange(request_id, [[1.0]], ["b"])._replace(variant="challenger", shadow=True)


async def test_a_shadow_answer_reaches_only_the_shadow_subscribers() -> None:
    sink = ListSink()
    worker = make_worker(sink)
    served: list[PredictionRecord] = []
    answers: list[Exchange] = []
    worker.subscribe(served.extend)
    worker.process([exchange("r-1", [[1.0]]), shadow_answer("r-1")])
    assert [r.request_id for r in served] == ["r-1"] and [b.request_id for b in sink.batches] == ["r-1"]
    worker.subscribe_shadow(answers.extend)
    worker.process([shadow_answer("r-2"), exchange("r-3", [[2.0]]), shadow_answer("r-3")])
    # In capture order, one call per batch; never parsed, logged or counted as a capture.
    assert [a.request_id for a in answers] == ["r-2", "r-3"]
    assert [r.request_id for r in served] == ["r-1", "r-3"] and len(sink.batches) == 2
    assert worker.capture.metrics.captured == 2


async def test_at_shutdown_an_answer_left_in_the_queue_is_not_a_lost_capture() -> None:
    capture = Capture(RandomSampler(1.0), model="iris", max_bytes=1 << 20, queue_size=100)
    worker = kserve_worker(capture)
    assert capture.queue.put_nowait(exchange("r-1", [[1.0]]))
    assert capture.queue.put_spare(shadow_answer("r-1"))
    await worker.drain(asyncio.get_running_loop().time() - 1)  # the deadline has passed: nothing is processed
    assert capture.metrics.dropped["queue_full"] == 1
