"""Split mode in the proxy: each request is served, counted and captured as its arm's, with its unit.

Real uvicorn servers on 127.0.0.1: a control and a treatment model that answer
differently, a fallback model, and the proxy app in front of them over the
project's own client. Nothing is mocked.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from sidecar.capture.handoff import Capture
from sidecar.capture.privacy import Anonymizer
from sidecar.capture.worker import CaptureWorker
from sidecar.experiments.assignment import Assigner
from sidecar.experiments.definition import experiment_from_mapping
from sidecar.experiments.routing import Router
from sidecar.experiments.units import FeatureUnit
from sidecar.protocols import AdapterOptions
from sidecar.records import Exchange, PredictionRecord
from sidecar.sampling import RandomSampler
from sidecar.serving.arms import Split
from sidecar.serving.flags import Flags
from sidecar.serving.metrics import ProxyMetrics
from sidecar.serving.proxy import ProxyApp
from sidecar.syntax.sampling import SourceKind
from sidecar.upstream.client import UpstreamClient
from tests.http import RawResponse, post_in_parts, raw_request
from tests.servers import Scope, read_body, run_server

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parents[2]
PREDICT = "/v1/models/m:predict"
JSON = ("content-type", "application/json")
SALT = "ranker-v2"
OPTIONS = AdapterOptions(protocol="kserve-v1")
ARMS = ("control", "treatment", "fallback")


@dataclass
class Model:
    """A model server that names itself in its answer and keeps the bodies it was sent."""

    name: str
    bodies: list[bytes] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.bodies.append(await read_body(receive))
        answer = orjson.dumps({"predictions": [1], "arm": self.name})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


@dataclass
class Running:
    port: int
    router: Router
    metrics: ProxyMetrics
    capture: Capture
    flags: Flags
    models: dict[str, Model]

    def requests(self, variant: str) -> float | None:
        registry = CollectorRegistry()
        registry.register(self.metrics)
        labels = {"model": "m", "variant": variant, "code": "200"}
        return registry.get_sample_value("mlsidecar_requests_total", labels)


@asynccontextmanager
async def split_proxy(key: str | None, *, segment_by: str | None = None) -> AsyncIterator[Running]:
    """The proxy app over a 50/50 control/treatment experiment keyed by ``key``, with a fallback, capturing all."""
    models = {name: Model(name) for name in ARMS}
    async with (
        run_server(models["control"]) as control,
        run_server(models["treatment"]) as treatment,
        run_server(models["fallback"]) as fallback,
    ):
        definition: dict[str, Any] = {
            "name": SALT,
            "variants": {
                "control": {"weight": 0.5},
                "treatment": {"weight": 0.5, "upstream": f"http://127.0.0.1:{treatment}"},
            },
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.02,
        }
        if key is not None:
            definition["assignment"] = {"key": key}
        if segment_by is not None:
            definition["segment_by"] = segment_by
        experiment = experiment_from_mapping(definition)
        router = Router(experiment, rng=random.Random(7))
        clients = [
            UpstreamClient(f"http://127.0.0.1:{port}", timeout=5, connect_timeout=2, max_connections=8)
            for port in (control, treatment, fallback)
        ]
        for client in clients:
            await client.open()
        try:
            metrics = ProxyMetrics("m", ARMS)
            capture = Capture(RandomSampler(1.0), model="m", max_bytes=1 << 20, queue_size=1_000)
            flags = Flags(fallback_available=True)
            by = experiment.assignment.key
            units = FeatureUnit(by[1], OPTIONS) if by is not None and by[0] == "feature" else None
            app = ProxyApp(
                clients[0],
                metrics,
                capture,
                variant="control",
                fallback=(clients[2], "fallback", flags),
                send_timeout=5,
                split=Split(router, clients[:2], metrics, units=units),
            )
            async with run_server(app, server_header=False, date_header=False) as port:
                yield Running(port, router, metrics, capture, flags, models)
        finally:
            for client in clients:
                await client.close()


def arm(response: RawResponse) -> str:
    assert response.status == 200, response
    name: str = orjson.loads(response.body)["arm"]
    return name


async def predict(port: int, headers: Sequence[tuple[str, str]] = (), body: bytes | None = None) -> RawResponse:
    return await raw_request(port, "POST", PREDICT, [JSON, *headers], body or b'{"instances": [[1.0]]}')


async def test_a_header_key_sends_each_user_to_one_arm_every_time() -> None:
    assigner = Assigner([("control", 0.5), ("treatment", 0.5)], SALT)
    async with split_proxy("header:x-user-id") as running:
        seen: dict[str, set[str]] = {}
        for _ in range(3):
            for user in range(30):
                response = await predict(running.port, [("x-user-id", f"u-{user}")])
                seen.setdefault(f"u-{user}", set()).add(arm(response))
        # Each user has one arm, the one the keyed hash gives: the same on any replica and after a restart.
        assert {user: arms for user, arms in seen.items()} == {
            user: {assigner.assign(user.encode()).variant} for user in seen
        }
        per_arm = {name: 3 * sum(arms == {name} for arms in seen.values()) for name in ("control", "treatment")}
        assert per_arm["control"] > 0 and per_arm["treatment"] > 0
        # Each upstream served exactly its arm's requests, and the variant label carries the arm.
        assert {name: len(running.models[name].bodies) for name in ARMS} == {**per_arm, "fallback": 0}
        assert running.requests("control") == per_arm["control"]
        assert running.requests("treatment") == per_arm["treatment"]
        assert running.router.keyed == [per_arm["control"], per_arm["treatment"]]
        assert running.router.randomised == [0, 0]


@pytest.mark.parametrize("key", ["header:x-user-id", None])
async def test_requests_without_the_key_are_randomised_and_counted_apart(key: str | None) -> None:
    async with split_proxy(key) as running:
        # Without a key in the definition, a request's x-user-id is nothing to the router.
        headers = [] if key else [("x-user-id", "u-1")]
        answered = [arm(await predict(running.port, headers)) for _ in range(40)]
        counts = [answered.count("control"), answered.count("treatment")]
        assert running.router.randomised == counts and running.router.keyed == [0, 0]
        assert all(counts)  # a coin per request, seeded: both arms come up in 40
        assert [running.requests("control"), running.requests("treatment")] == counts
        # An empty header is no unit either.
        assert arm(await predict(running.port, [("x-user-id", "")])) in ("control", "treatment")
        assert sum(running.router.randomised) == 41 and running.router.keyed == [0, 0]


async def test_the_fallback_flag_wins_and_the_router_is_not_called() -> None:
    async with split_proxy("header:x-user-id") as running:
        await predict(running.port, [("x-user-id", "u-1")])
        before = (list(running.router.keyed), list(running.router.randomised))
        running.flags.set("use_fallback_model", True, source="api")
        answered = {arm(await predict(running.port, [("x-user-id", f"u-{i}")])) for i in range(10)}
        answered |= {arm(await predict(running.port))}
        assert answered == {"fallback"}
        assert (running.router.keyed, running.router.randomised) == before
        assert running.requests("fallback") == 11
        assert len(running.models["control"].bodies) + len(running.models["treatment"].bodies) == 1
        # Captured in no arm: no unit.
        exchanges = [Exchange._make(e) for e in running.capture.queue.get_nowait(100)]
        assert [(e.variant, e.unit) for e in exchanges[1:]] == [("fallback", None)] * 11
        # Cleared, the experiment routes again.
        running.flags.set("use_fallback_model", False, source="api")
        assert arm(await predict(running.port, [("x-user-id", "u-1")])) != "fallback"
        assert sum(running.router.keyed) == 2


def kserve(user: object) -> bytes:
    return orjson.dumps({"instances": [{"user_id": user, "x": 1.0}]})


async def test_a_feature_key_routes_by_the_body_and_a_streamed_body_is_randomised() -> None:
    assigner = Assigner([("control", 0.5), ("treatment", 0.5)], SALT)
    async with split_proxy("feature:user_id") as running:
        for user in range(20):
            for _ in range(2):
                answered = arm(await predict(running.port, body=kserve(f"u-{user}")))
                assert answered == assigner.assign(f"u-{user}".encode()).variant
        # An id sent as a number is the same unit as its digits (units.unit_text).
        assert arm(await predict(running.port, body=kserve(17))) == assigner.assign(b"17").variant
        assert sum(running.router.keyed) == 41 and running.router.randomised == [0, 0]
        # A header of the feature's name is not the key: a body without the feature gets a coin.
        await predict(running.port, [("user_id", "u-1")], body=b'{"instances": [{"x": 1.0}]}')
        assert sum(running.router.randomised) == 1

        # A body streamed in two messages: the unit is not read (the arm is chosen before forwarding, from
        # the first message alone), so a coin decides, and the body still reaches the arm whole.
        body = kserve("u-3")
        response = await post_in_parts(running.port, PREDICT, [body[:10], body[10:]], [JSON])
        assert sum(running.router.randomised) == 2 and sum(running.router.keyed) == 41
        assert running.models[arm(response)].bodies[-1] == body


async def test_captured_records_carry_the_unit_and_the_segment() -> None:
    async with split_proxy("header:x-user-id", segment_by="header:x-country") as running:
        sent = [
            ("r-1", [("x-user-id", "u-1"), ("x-country", "fr")]),
            ("r-2", [("x-user-id", "émile"), ("x-country", "de")]),  # UTF-8 on the wire, as unit_text decodes it
            ("r-3", [("x-country", "fr")]),  # no unit: a coin, and the record has none
            ("r-4", [("x-user-id", "u-4")]),  # no segment
        ]
        answered = {}
        for request_id, headers in sent:
            raw = [(k, v.encode().decode("latin-1")) for k, v in headers]
            answered[request_id] = arm(await predict(running.port, [("x-request-id", request_id), *raw]))
        records = _records(running.capture, segment_by=("header", "x-country"))
        assert [(r.request_id, r.variant, r.unit, r.segment) for r in records] == [
            ("r-1", answered["r-1"], "u-1", "fr"),
            ("r-2", answered["r-2"], "émile", "de"),
            ("r-3", answered["r-3"], None, "fr"),
            ("r-4", answered["r-4"], "u-4", None),
        ]


async def test_a_feature_key_and_a_feature_segment_reach_the_records() -> None:
    async with split_proxy("feature:user_id", segment_by="feature:country") as running:
        bodies = {
            "r-1": orjson.dumps(
                {"instances": [{"user_id": "u-1", "country": "fr"}, {"user_id": "u-1", "country": "de"}]}
            ),
            "r-2": orjson.dumps({"instances": [{"user_id": 42.0}]}),  # an id as FP64: the unit "42", no segment
        }
        for request_id, body in bodies.items():
            await predict(running.port, [("x-request-id", request_id)], body=body)
        records = _records(running.capture, segment_by=("feature", "country"))
        assert [(r.request_id, r.row, r.unit, r.segment) for r in records] == [
            ("r-1", 0, "u-1", "fr"),
            ("r-1", 1, "u-1", "de"),
            ("r-2", 0, "42", None),
        ]


def _records(capture: Capture, *, segment_by: tuple[SourceKind, str]) -> list[PredictionRecord]:
    """What the capture worker makes of the captured exchanges: the records its subscribers get."""
    worker = CaptureWorker(
        capture,
        OPTIONS,
        Anonymizer((), "hash"),
        [],
        model_name="m",
        model_version=None,
        version_header=b"x-model-version",
        segment_by=segment_by,
    )
    records: list[PredictionRecord] = []
    worker.subscribe(records.extend)
    worker.process(capture.queue.get_nowait(100))
    return records


async def test_a_proxy_without_an_experiment_captures_no_unit_or_segment() -> None:
    model = Model("primary")
    async with run_server(model) as upstream:
        client = UpstreamClient(f"http://127.0.0.1:{upstream}", timeout=5, connect_timeout=2, max_connections=2)
        await client.open()
        try:
            capture = Capture(RandomSampler(1.0), model="m", max_bytes=1 << 20, queue_size=100)
            app = ProxyApp(client, ProxyMetrics("m", ("primary",)), capture, variant="primary", send_timeout=5)
            async with run_server(app) as port:
                await predict(port, [("x-user-id", "u-1"), ("x-country", "fr")])
        finally:
            await client.close()
    [exchange] = map(Exchange._make, capture.queue.get_nowait(10))
    assert exchange.unit is None
    worker = CaptureWorker(
        capture, OPTIONS, Anonymizer((), "hash"), [], model_name="m", model_version=None, version_header=b"x"
    )
    records: list[PredictionRecord] = []
    worker.subscribe(records.extend)
    worker.process([exchange])
    assert [(r.variant, r.unit, r.segment) for r in records] == [("primary", None, None)]


def small(assignment: dict[str, str]) -> Router:
    """A router over a 50/50 experiment with ``assignment``, whose treatment is never reached."""
    return Router(
        experiment_from_mapping(
            {
                "name": "e",
                "variants": {"control": {"weight": 0.5}, "treatment": {"weight": 0.5, "upstream": "http://challenger"}},
                "assignment": assignment,
                "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
                "mde": 0.02,
            }
        )
    )


def test_a_split_is_checked_against_the_proxy_it_is_given() -> None:
    client = UpstreamClient("http://127.0.0.1:1", timeout=1, connect_timeout=1, max_connections=1)
    metrics = ProxyMetrics("m", ("control", "treatment"))
    router = small({"key": "feature:user_id"})
    units = FeatureUnit("user_id", OPTIONS)
    with pytest.raises(ValueError, match=r"2 arms \(control, treatment\) but 1 clients"):
        Split(router, [client], metrics, units=units)
    with pytest.raises(ValueError, match="no variant for the arms treatment"):
        Split(router, [client, client], ProxyMetrics("m", ("control",)), units=units)
    with pytest.raises(ValueError, match="feature:user_id is read from the body"):
        Split(router, [client, client], metrics)
    with pytest.raises(ValueError, match="feature:user_id is read from the body"):
        Split(router, [client, client], metrics, units=FeatureUnit("account", OPTIONS))
    with pytest.raises(ValueError, match="the assignment has header:x-user-id"):
        Split(small({"key": "header:x-user-id"}), [client, client], metrics, units=units)
    with pytest.raises(ValueError, match="the assignment has no key"):
        Split(small({}), [client, client], metrics, units=units)
    split = Split(router, [client, client], metrics, units=units)
    capture = Capture(RandomSampler(0.0), model="m", max_bytes=1, queue_size=1)
    with pytest.raises(ValueError, match="serves control 'control', not 'primary'"):
        ProxyApp(client, metrics, capture, variant="primary", send_timeout=5, split=split)


def test_the_proxy_loads_no_experiment_code_until_it_is_given_an_experiment() -> None:
    # The arms module takes the experiment's types for annotations only: a proxy without an experiment
    # loads neither the experiment code nor the payload adapters a feature key reads units with.
    code = (
        "import sys\n"
        "import sidecar.serving.proxy\n"
        "print(' '.join(n for n in sys.modules if n.startswith(('sidecar.experiments', 'sidecar.protocols'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []
