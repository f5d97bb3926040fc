"""The pairing in the monitoring process: the challenger's answers through a real CaptureWorker into a real store.

The answers reach the worker as the monitor link carries them (pickled in a
frame, as ``sidecar.plane.frames`` sends a batch), and go to the comparison
only: never to the sinks, the served records' subscribers, or the capture counts.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from sidecar.capture.handoff import Capture
from sidecar.experiments.definition import Experiment, experiment_from_mapping
from sidecar.experiments.pairing import FATES, ShadowPairing
from sidecar.plane.frames import EXCHANGES, encode
from sidecar.protocols import AdapterOptions
from sidecar.records import Exchange, PredictionRecord
from sidecar.sampling import RandomSampler
from tests.capture.test_worker import ListSink
from tests.capture.workers import kserve_worker
from tests.store.support import T0, Place, opened

pytestmark = pytest.mark.anyio

JSON = [(b"content-type", b"application/json")]
PATH = "/v1/models/iris:predict"


def shadow_experiment(name: str = "shadow-v2") -> Experiment:
    return experiment_from_mapping(
        {
            "name": name,
            "mode": "shadow",
            "variants": {"control": {}, "challenger": {"upstream": "http://challenger:8080"}},
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.02,
        }
    )


def request(rows: int) -> bytes:
    return orjson.dumps({"instances": [[float(i)] for i in range(rows)]})


def answer(predictions: object) -> bytes:
    return orjson.dumps({"predictions": predictions})


def control(request_id: str, rows: int = 1, predictions: object = None) -> Exchange:
    body = answer(["a"] * rows if predictions is None else predictions)
    return Exchange(request_id, T0, "POST", PATH, JSON, request(rows), 200, JSON, body, 0.004, "control", "random", 0.5)


def challenger(
    request_id: str,
    predictions: object,
    *,
    rows: int = 1,
    status: int = 200,
    captured: bool = True,
    latency: float = 0.02,
    raw: bytes | None = None,
) -> Exchange:
    """An answer as the tap hands it over: control's request when it was captured, else none."""
    if not captured:
        return Exchange(request_id, T0, "", "", [], b"", status, [], b"", latency, "challenger", "shadow", None,
                        False, None, True)  # fmt: skip
    body = answer(predictions) if raw is None else raw
    return Exchange(request_id, T0, "POST", PATH, JSON, request(rows), status, JSON, body, latency, "challenger",
                    "shadow", 0.5, False, None, True)  # fmt: skip


def through_the_link(batch: Sequence[Exchange]) -> list[Exchange]:
    """The batch as the monitoring process reads it from the data channel."""
    frame = encode((EXCHANGES, list(batch)))
    message = pickle.loads(frame[4:])
    assert message[0] == EXCHANGES
    exchanges: list[Exchange] = message[1]
    return exchanges


async def test_answers_go_to_the_comparison_alone_and_pair_with_controls_rows_in_the_store(tmp_path: Path) -> None:
    capture = Capture(RandomSampler(1.0), model="iris", max_bytes=1 << 20, queue_size=100)
    sink = ListSink()
    worker = kserve_worker(capture, [sink], feature_names=("x",))
    served: list[PredictionRecord] = []
    worker.subscribe(served.extend)
    experiment = shadow_experiment()
    async with opened(tmp_path) as store:
        pairing = ShadowPairing(experiment, worker.options, store.add_shadow, model_name="iris")
        worker.subscribe(store.add)
        worker.subscribe_shadow(pairing.observe)
        batch = [
            control("r-1"),
            control("r-batch", rows=3, predictions=["a", "b", "a"]),
            control("r-5"),
            challenger("r-1", ["b"], latency=0.03),
            challenger("r-batch", ["a", "b", "b"], rows=3, latency=0.04),
            challenger("r-2", None, captured=False, latency=0.05),  # control's capture did not keep it
            challenger("r-3", None, status=500, captured=False, latency=0.2),
            challenger("r-4", None, raw=b"not json"),  # a 2xx answer the adapter cannot read
            challenger("r-5", ["a"], rows=1, raw=answer([])),  # no prediction for its row
            challenger("r-6", None, status=504),  # the mirror timed out
        ]
        worker.process(through_the_link(batch))
        pairs = await store.shadow_pairs(experiment.name, control="control", since=T0, model="iris")
    # The sinks and the served records' subscribers saw control's exchanges only, and so did the capture counts.
    assert [record.variant for record in served] == ["control"] * 5
    assert sorted(batch.request_id for batch in sink.batches) == ["r-1", "r-5", "r-batch"]
    assert sum(len(batch.lines) for batch in sink.batches) == 5
    assert capture.metrics.captured == 3
    assert pairing.fates == {"stored": 2, "failed": 2, "not_captured": 1, "unreadable": 2}
    assert set(pairing.fates) == set(FATES)
    # Every answer counts for the challenger's serving: 2 of 7 were 5xx.
    serving = pairing.serving()
    assert serving.requests == 7 and serving.error_rate == pytest.approx(2 / 7)
    assert 25 < serving.latency_p95_ms < 300
    assert (pairs.control_rows, len(pairs)) == (5, 4)
    assert sorted(zip(pairs.control, pairs.challenger, strict=True)) == [("a", "a"), ("a", "b"), ("a", "b"), ("b", "b")]


async def test_the_payloads_own_id_keys_the_answer_as_it_keys_controls_record(tmp_path: Path) -> None:
    # Open Inference Protocol: without X-Request-Id the proxy makes an id up, and the body's "id" is the one the
    # caller knows, which control's record (and its labels) carry; the challenger's answer is keyed the same.
    body = orjson.dumps({"id": "caller-7", "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1]}]})
    response = orjson.dumps(
        {"id": "caller-7", "outputs": [{"name": "y", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
    )
    other = orjson.dumps(
        {"id": "caller-7", "outputs": [{"name": "y", "shape": [1], "datatype": "BYTES", "data": ["b"]}]}
    )
    path = "/v2/models/iris/infer"
    ours = Exchange("gen-1", T0, "POST", path, JSON, body, 200, JSON, response, 0.004, "control", "random", 1.0, True)
    theirs = Exchange("gen-1", T0, "POST", path, JSON, body, 200, JSON, other, 0.01, "challenger", "shadow", 1.0,
                      True, None, True)  # fmt: skip
    capture = Capture(RandomSampler(1.0), model="iris", max_bytes=1 << 20, queue_size=10)
    worker = kserve_worker(capture)
    worker.options = AdapterOptions(protocol="open-inference-v2")
    experiment = shadow_experiment()
    async with opened(tmp_path) as store:
        pairing = ShadowPairing(experiment, worker.options, store.add_shadow, model_name="iris")
        worker.subscribe(store.add)
        worker.subscribe_shadow(pairing.observe)
        worker.process([ours, theirs])
        pairs = await store.shadow_pairs(experiment.name, control="control", since=T0)
    keys = Place(tmp_path).rows("SELECT request_id FROM shadow_predictions")
    assert pairing.fates["stored"] == 1
    assert (pairs.control, pairs.challenger) == (["a"], ["b"])
    assert keys == [("caller-7",)]


def test_a_split_experiment_has_nothing_to_pair() -> None:
    split = experiment_from_mapping(
        {
            "name": "ab",
            "variants": {"control": {"weight": 0.5}, "treatment": {"weight": 0.5, "upstream": "http://t"}},
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.02,
        }
    )
    capture = Capture(RandomSampler(1.0), model="iris", max_bytes=1 << 20, queue_size=10)
    with pytest.raises(ValueError, match="splits its traffic"):
        ShadowPairing(split, kserve_worker(capture).options, lambda name, records: None, model_name="iris")
