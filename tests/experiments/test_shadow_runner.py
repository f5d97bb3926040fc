"""A shadow experiment end to end inside the sidecar's parts: real mirrors to a real challenger, through the real
capture hand-off and worker, into a real store, compared by the runner, shown by the API and the metrics.

The proxy's side is played by this test: per request it does what ``ProxyApp`` does in shadow mode after
control answered (``Capture.submit`` when the sampler kept the request, then ``Shadow.submit``). The rest is
wired as the assembly wires it (``ShadowTap`` as ``on_response``, ``Capture.captured`` as ``captured``, the
worker's shadow subscriber, the store, the runner), in one process, as ``SIDECAR_MONITORING_PLANE=inline`` runs.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette

from sidecar.capture.handoff import Capture
from sidecar.capture.privacy import Anonymizer
from sidecar.capture.worker import CaptureWorker
from sidecar.experiments.api import experiment_routes
from sidecar.experiments.data import Serving
from sidecar.experiments.definition import Experiment, experiment_from_mapping
from sidecar.experiments.metrics import ShadowMetrics
from sidecar.experiments.pairing import ShadowPairing
from sidecar.experiments.shadow import Shadow
from sidecar.experiments.shadow_runner import ShadowRunner
from sidecar.experiments.shadow_view import DIFFERENCE_STATS, EFFECT_STATS, shadow_json
from sidecar.experiments.tap import ShadowTap
from sidecar.performance import PerformanceConfig
from sidecar.protocols import AdapterOptions
from sidecar.sampling import RandomSampler
from sidecar.store import LabelItem, PredictionStore
from tests.experiments.test_metrics import assert_promtool_finds_nothing, exposition
from tests.http import raw_request
from tests.servers import read_body, run_server
from tests.store.support import T0, Clock, opened
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

MODEL = "iris"
PATH = "/v1/models/iris:predict"
JSON = [(b"content-type", b"application/json")]
REQUESTS = 600


def experiment_of() -> Experiment:
    return experiment_from_mapping(
        {
            "name": "iris-v2-shadow",
            "mode": "shadow",
            "variants": {"control": {}, "challenger": {"upstream": "http://challenger"}},
            "metrics": {
                "primary": [{"name": "accuracy", "source": "label"}],
                "guardrails": [{"name": "latency_p95_ms", "max_increase": 1000}],
            },
            "mde": 0.02,
        }
    )


def x_of(i: int) -> float:
    return (i % 100) / 100


def control_says(x: float) -> str:
    return "b" if x >= 0.5 else "a"


def truth(x: float) -> str:
    return "b" if x >= 0.58 else "a"


@dataclass
class Challenger:
    """A KServe V1 model whose boundary is nearer the truth's than control's: it errs on x in [0.58, 0.6)."""

    answered: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = orjson.loads(await read_body(receive))
        answer = orjson.dumps({"predictions": ["b" if x >= 0.6 else "a" for [x] in body["instances"]]})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
        self.answered += 1


@dataclass
class Parts:
    capture: Capture
    shadow: Shadow
    tap: ShadowTap
    pairing: ShadowPairing
    store: PredictionStore
    runner: ShadowRunner


@asynccontextmanager
async def wired(tmp_path: Path, experiment: Experiment) -> AsyncIterator[Parts]:
    async with run_server(Challenger()) as port, opened(tmp_path, buffer_rows=5_000) as store:
        # Half the requests captured: a coin per request, as SIDECAR_SAMPLE_RATE=0.5 decides. Seeded: which half
        # is kept decides how many discordant pairs McNemar sees, and so its verdict.
        capture = Capture(RandomSampler(0.5, rng=random.Random(17)), model=MODEL, max_bytes=1 << 20, queue_size=10_000)
        options = AdapterOptions(protocol="kserve-v1", feature_names=("x",))
        worker = CaptureWorker(
            capture, options, Anonymizer((), "hash"), [], model_name=MODEL, model_version=None,
            version_header=b"x-model-version",
        )  # fmt: skip
        pairing = ShadowPairing(experiment, options, store.add_shadow, model_name=MODEL)
        worker.subscribe(store.add)
        worker.subscribe_shadow(pairing.observe)
        tap = ShadowTap(capture.queue.put_spare, variant="challenger")
        shadow = Shadow(
            f"http://127.0.0.1:{port}",
            experiment=experiment.name,
            on_response=tap,
            captured=capture.captured,
            concurrency=4,
            timeout=5.0,
            queue_size=1_000,
            queue_max_bytes=1 << 20,
        )
        runner = ShadowRunner(
            store,
            experiment,
            PerformanceConfig(task="classification", min_labels=50),
            pairing=pairing,
            serving=lambda: Serving(REQUESTS, 0.0, 12.0),
            model=MODEL,
            min_samples=50,
            clock=Clock(T0),
        )
        await shadow.start()
        task = asyncio.create_task(worker.run())
        try:
            yield Parts(capture, shadow, tap, pairing, store, runner)
        finally:
            await shadow.close(asyncio.get_running_loop().time() + 5)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def serve(parts: Parts, i: int) -> bool:
    """One request as the proxy handles it in shadow mode, once control answered; whether it was captured."""
    x = x_of(i)
    request_id = f"req-{i}"
    body = orjson.dumps({"instances": [[x]]})
    keep, probability = parts.capture.admit([])
    if keep:
        parts.capture.submit(
            request_id=request_id,
            request_id_generated=False,
            timestamp=T0 + i,
            method="POST",
            path=PATH,
            request_headers=JSON,
            request_body=body,
            status_code=200,
            response_headers=JSON,
            response_body=orjson.dumps({"predictions": [control_says(x)]}),
            latency_seconds=0.004,
            variant="control",
            probability=probability,
        )
    lines = b"content-type: application/json\r\nx-request-id: " + request_id.encode() + b"\r\n"
    parts.shadow.submit("POST", PATH.encode(), lines, 2, body, request_id)
    return keep


async def test_the_challenger_is_paired_compared_and_shown(tmp_path: Path) -> None:
    experiment = experiment_of()
    async with wired(tmp_path, experiment) as parts:
        captured = [i for i in range(REQUESTS) if serve(parts, i)]
        await wait_until(lambda: parts.pairing.answers == REQUESTS, timeout=20)
        await parts.store.flush()
        labels = [LabelItem(f"req-{i}", None, truth(x_of(i))) for i in captured]
        assert {outcome.kind for outcome in await parts.store.attach_labels(labels)} == {"joined"}
        snapshot = await parts.runner.evaluate()
        assert snapshot is not None
        routes = experiment_routes(parts.runner, parts.store, experiment, admin_token="t", max_bytes=1 << 20)
        async with run_server(Starlette(routes=routes)) as port:
            response = await raw_request(port, "GET", "/api/v1/experiments")
        text, samples = exposition(ShadowMetrics(parts.runner, model=MODEL))
    n = len(captured)
    assert 200 < n < 400  # the coin kept about half
    # Every answer was counted; those of captured requests were read and paired, the others not.
    assert parts.pairing.fates == {"stored": n, "failed": 0, "not_captured": REQUESTS - n, "unreadable": 0}
    assert parts.tap.dropped == 0 and parts.capture.metrics.dropped["queue_full"] == 0
    assert (snapshot.pairing.control_rows, snapshot.pairing.paired, snapshot.pairing.labelled) == (n, n, n)
    assert snapshot.pairing.rate == 1.0
    # The two boundaries differ on x in [0.5, 0.6): a tenth of the requests.
    disagree = sum(0.5 <= x_of(i) < 0.6 for i in captured)
    assert snapshot.agreement is not None and snapshot.agreement.agreed == n - disagree
    accuracy = snapshot.metric("accuracy")
    control_only = sum(0.58 <= x_of(i) < 0.6 for i in captured)
    challenger_only = sum(0.5 <= x_of(i) < 0.58 for i in captured)
    assert accuracy.mcnemar is not None
    assert (accuracy.mcnemar.control_only, accuracy.mcnemar.challenger_only) == (control_only, challenger_only)
    assert accuracy.verdict == "challenger_better"
    assert snapshot.arms[1].serving.requests == REQUESTS and snapshot.arms[1].serving.error_rate == 0.0
    # The API shows the snapshot's view.
    assert response.status == 200
    [entry] = orjson.loads(response.body)["experiments"]
    assert (entry["status"], entry["analysis"]) == ("evaluated", None)
    assert entry["evaluated_at"] == entry["started_at"] == "2025-11-26T08:10:38.000Z"
    assert entry["shadow"] == orjson.loads(orjson.dumps(shadow_json(snapshot)))
    assert entry["shadow"]["agreement"]["rate"] == pytest.approx((n - disagree) / n)
    assert entry["shadow"]["metrics"][0]["discordant"] == {
        "control_only": control_only,
        "challenger_only": challenger_only,
        "exact": False,
    }
    # The metrics follow it, every family with the model first and every label value from the definition.
    assert samples[("mlsidecar_shadow_agreement_ratio", (("model", MODEL), ("experiment", experiment.name)))] == (
        pytest.approx(snapshot.agreement.rate)
    )
    assert all(pairs[0] == ("model", MODEL) and pairs[1] == ("experiment", experiment.name) for _, pairs in samples)
    stats = {dict(pairs)["stat"] for name, pairs in samples if name == "mlsidecar_shadow_effect"}
    assert stats == set(EFFECT_STATS)
    differences = {dict(pairs)["stat"] for name, pairs in samples if name == "mlsidecar_shadow_score_difference"}
    assert differences <= set(DIFFERENCE_STATS)  # a classifier without confidences has no differences
    variants = {dict(pairs)["variant"] for name, pairs in samples if name == "mlsidecar_shadow_error_ratio"}
    assert variants == {"control", "challenger"}
    answers = {
        dict(pairs)["fate"]: v for (name, pairs), v in samples.items() if name == "mlsidecar_shadow_answers_total"
    }
    assert answers == {"stored": n, "failed": 0, "not_captured": REQUESTS - n, "unreadable": 0}
    assert_promtool_finds_nothing(text)


async def test_a_store_fault_keeps_the_last_comparison_and_a_split_experiment_is_refused(tmp_path: Path) -> None:
    experiment = experiment_of()
    async with wired(tmp_path, experiment) as parts:
        for i in range(50):
            serve(parts, i)
        await wait_until(lambda: parts.pairing.answers == 50, timeout=20)
        first = await parts.runner.evaluate()
        await parts.store.close(asyncio.get_running_loop().time() + 5)
        kept = await parts.runner.evaluate()
        text, samples = exposition(ShadowMetrics(parts.runner, model=MODEL))
    assert first is not None and kept is first
    assert parts.runner.failures == {"store": 1, "error": 0}
    key = ("mlsidecar_experiment_evaluation_failures_total", (("model", MODEL), ("experiment", experiment.name),
                                                              ("reason", "store")))  # fmt: skip
    assert samples[key] == 1
    assert math.isfinite(first.pairing.rate)
    split = experiment_from_mapping(
        {
            "name": "ab",
            "variants": {"control": {"weight": 0.5}, "treatment": {"weight": 0.5, "upstream": "http://t"}},
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.02,
        }
    )
    with pytest.raises(ValueError, match="splits its traffic"):
        ShadowRunner(parts.store, split, PerformanceConfig(), pairing=parts.pairing, serving=lambda: Serving(0, 0, 0))


async def test_run_evaluates_every_interval_and_outlives_a_failing_comparison(tmp_path: Path) -> None:
    experiment = experiment_of()
    async with opened(tmp_path) as store:
        pairing = ShadowPairing(experiment, AdapterOptions(protocol="kserve-v1"), store.add_shadow, model_name=MODEL)
        calls = 0

        def serving() -> Serving:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug in the wiring")
            return Serving(0, math.nan, math.nan)

        runner = ShadowRunner(store, experiment, PerformanceConfig(), pairing=pairing, serving=serving, model=MODEL)
        task = asyncio.create_task(runner.run(0.05))
        try:
            await wait_until(lambda: runner.snapshot is not None, timeout=10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert runner.failures["error"] == 1 and runner.snapshot is not None
    assert runner.snapshot.pairing.control_rows == 0 and math.isnan(runner.snapshot.pairing.rate)
