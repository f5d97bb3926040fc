"""The ``make demo`` stack: the model server in-process, the demo's parts, then ``python -m demo`` end to end.

The end-to-end tests run the demo as ``make demo`` does: ``python -m demo``
from the checkout, on the runtime venv (``SIDECAR_RUNTIME_VENV``, which
``make test`` sets) or, run alone, on this interpreter;
``test_the_demo_imports_no_dev_only_package`` holds the demo to the runtime
dependencies either way.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from demo.environment import DEMO_RULES, Timings, alert_rules, sidecar_environment
from demo.experiment import USERS, Conversions, conversion_probability, experiment_definition
from demo.model_server import (
    EMPLOYMENT,
    EMPLOYMENT_SHARES,
    FEATURES,
    INCOME_MEAN,
    INCOME_STD,
    READY_PATH,
    FloatArray,
    LogisticRegression,
    create_app,
    default_probability,
    make_dataset,
    sample_features,
    serve,
    train_model,
)
from demo.scenario import CALM, SHIFT, Mix, Scenario
from demo.summary import alerts_part, drift_part, experiment_part, quality_part
from demo.traffic import PREDICT_PATH, instance
from demo.training import train
from sidecar.alerting.rules import default_rules, load_rules
from sidecar.config import Settings
from sidecar.experiments.analysis import analyse
from sidecar.experiments.assignment import Assigner
from sidecar.experiments.compare import compare_proportions
from sidecar.experiments.data import ExperimentData, MetricData, Routing, Serving
from sidecar.experiments.definition import load_experiment
from sidecar.experiments.moments import Proportion
from sidecar.experiments.srm import srm
from sidecar.experiments.view import snapshot_json
from sidecar.reference import load_profile
from sidecar.upstream.client import UpstreamClient
from tests.http import RawResponse, raw_request, scrape
from tests.servers import run_sidecar
from tests.test_installed import DEV_ONLY

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
JSON = [("content-type", "application/json")]
# The requests v1, the experiment's control, served.
OK_REQUESTS = 'mlsidecar_requests_total{code="200",model="credit-risk",variant="v1"}'


@asynccontextmanager
async def model_server(model: LogisticRegression | None = None, version: str = "1") -> AsyncIterator[int]:
    async with serve(create_app(model or train_model(seed=0), version)) as url:
        yield int(url.rsplit(":", 1)[1])


async def predict(port: int, body: bytes, path: str = PREDICT_PATH) -> RawResponse:
    return await raw_request(port, "POST", path, JSON, body)


async def test_predictions_are_probabilities_that_beat_chance() -> None:
    # Fresh data from another seed than the training set's.
    x, y = make_dataset(np.random.default_rng(12345), 500)
    async with model_server() as port:
        response = await predict(port, orjson.dumps({"instances": [instance(row) for row in x]}))
    assert response.status == 200
    probabilities = np.array(orjson.loads(response.body)["predictions"])
    assert probabilities.shape == (500, 2)
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    accuracy = np.mean(probabilities.argmax(axis=1) == y)
    always_majority = max(y.mean(), 1 - y.mean())
    assert accuracy > always_majority + 0.05


async def test_instances_keyed_by_name_equal_instances_in_order() -> None:
    objects = [instance(row) for row in sample_features(np.random.default_rng(7), 3)]
    lists = [[row[name] for name in FEATURES] for row in objects]
    async with model_server() as port:
        by_name = await predict(port, orjson.dumps({"instances": objects}))
        in_order = await predict(port, orjson.dumps({"instances": lists}))
        status = await raw_request(port, "GET", "/v1/models/credit-risk")
        ready = await raw_request(port, "GET", READY_PATH)
    assert by_name.status == in_order.status == 200
    assert orjson.loads(by_name.body) == orjson.loads(in_order.body)
    assert orjson.loads(status.body) == {
        "name": "credit-risk",
        "ready": True,
        "features": list(FEATURES),
        "classes": ["repaid", "default"],
    }
    assert (ready.status, orjson.loads(ready.body)) == (200, {"ready": True})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[[1, 2, 3, 4, 5]]", '{"instances": [...]}'),
        (b'{"instances": []}', "at least one instance"),
        (b'{"instances": [[1, 2]]}', "instances[0]: expected 6 values"),
        (b'{"instances": [{"income": 50, "height": 2}]}', "missing ['debt_ratio'"),
        (
            b'{"instances": [[50, 0.3, 40, 4, 0, "retired"], [50, 0.3, "40", 4, 0, "retired"]]}',
            'instances[1].age: expected a number, got "40"',
        ),
        (b'{"instances": [[50, 0.3, 40, true, 0, "retired"]]}', "instances[0].credit_lines: expected a number"),
        (
            b'{"instances": [[50, 0.3, 40, 4, 0, "astronaut"]]}',
            'instances[0].employment: expected one of salaried, self_employed, retired, unemployed, got "astronaut"',
        ),
        (b'{"instances": [[50, 0.3, 40, 4, 0, 1]]}', "instances[0].employment: expected one of"),
        (b'{"instances": ["50, 0.3, 40, 4, 0, retired"]}', "instances[0]: expected a list of values or an object"),
        (orjson.dumps({"instances": [[50, 0.3, 40, 4, 0, "retired"]] * 1025}), "at most 1024 instances"),
    ],
    ids=[
        "not-json",
        "not-object",
        "empty",
        "short-row",
        "wrong-keys",
        "string",
        "bool",
        "unknown-category",
        "category-code",
        "row-type",
        "too-many",
    ],
)
async def test_malformed_input_is_a_400_that_says_what_is_wrong(body: bytes, message: str) -> None:
    async with model_server() as port:
        response = await predict(port, body)
    assert response.status == 400
    assert message in orjson.loads(response.body)["error"]


async def test_unknown_model_is_a_404() -> None:
    async with model_server() as port:
        response = await predict(port, b'{"instances": [[50, 0.3, 40, 4, 0, "retired"]]}', "/v1/models/other:predict")
    assert response.status == 404
    assert "other" in orjson.loads(response.body)["error"]


def test_income_shift_moves_only_income() -> None:
    base = sample_features(np.random.default_rng(3), 20_000)
    shifted = sample_features(np.random.default_rng(3), 20_000, income_shift=-1.0)
    income = FEATURES.index("income")
    assert base[:, income].mean() == pytest.approx(INCOME_MEAN, abs=0.5)
    assert shifted[:, income].mean() == pytest.approx(INCOME_MEAN - INCOME_STD, abs=0.5)
    others = [i for i in range(len(FEATURES)) if i != income]
    np.testing.assert_array_equal(base[:, others], shifted[:, others])


def test_employment_shares_move_only_employment() -> None:
    base = sample_features(np.random.default_rng(4), 20_000)
    shifted = sample_features(np.random.default_rng(4), 20_000, employment_shares=SHIFT.employment_shares)
    employment = FEATURES.index("employment")
    for rows, shares in ((base, EMPLOYMENT_SHARES), (shifted, SHIFT.employment_shares)):
        counts = np.bincount(rows[:, employment].astype(np.int64), minlength=len(EMPLOYMENT))
        np.testing.assert_allclose(counts / len(rows), shares, atol=0.01)
    others = [i for i in range(len(FEATURES)) if i != employment]
    np.testing.assert_array_equal(base[:, others], shifted[:, others])


def test_the_scenario_is_calm_then_shifted_and_scales_with_speed() -> None:
    scenario = Scenario.at_speed(5.0)
    assert scenario.calm_seconds == pytest.approx(6.0)
    assert (scenario.phase(5.9), scenario.mix(5.9).age_zero_share) == ("calm", 0.0)
    assert (scenario.phase(6.0), scenario.mix(6.0)) == ("shifted", SHIFT)
    timings = Timings(5.0).environment()
    assert timings["SIDECAR_DRIFT_WINDOW_SECONDS"] == "6"
    assert timings["SIDECAR_EVAL_INTERVAL_SECONDS"] == "1"
    assert Timings(1.0).environment()["SIDECAR_EXPERIMENT_INTERVAL_SECONDS"] == "5"
    assert timings["SIDECAR_EXPERIMENT_INTERVAL_SECONDS"] == "1"
    # The sidecar takes no slice nor experiment interval under a second; the window then still holds several.
    assert Timings(10.0).environment()["SIDECAR_DRIFT_SLICE_SECONDS"] == "1"
    assert Timings(10.0).environment()["SIDECAR_EXPERIMENT_INTERVAL_SECONDS"] == "1"
    assert Settings.from_env({"SIDECAR_UPSTREAM_URL": "http://127.0.0.1:1", **Timings(10.0).environment()})


def test_the_reference_profiles_the_training_data_with_its_baseline(tmp_path: Path) -> None:
    trained = train(tmp_path, rows=5_000)
    profile = load_profile(trained.reference)
    assert list(profile.features) == list(FEATURES)
    kinds = {name: distribution.kind for name, distribution in profile.features.items()}
    assert kinds == {name: "categorical" if name == "employment" else "numeric" for name in FEATURES}
    assert set(profile.features["employment"].categories) == set(EMPLOYMENT)
    assert set(profile.outputs) == {"prediction", "confidence"}
    assert profile.target is not None and profile.target.kind == "categorical"
    assert 0.6 < profile.baseline["accuracy"] < 1.0
    assert profile.features["age"].stats.min == 21


def test_demo_rules_are_the_built_in_ones_with_short_for_and_scale_with_speed(tmp_path: Path) -> None:
    rules = {rule.name: rule for rule in load_rules(DEMO_RULES)}
    assert set(rules) == {rule.name for rule in default_rules()}
    assert max(rule.for_seconds for rule in rules.values()) <= 60
    scaled = {rule.name: rule for rule in load_rules(alert_rules(5.0, tmp_path))}
    for name, rule in rules.items():
        assert scaled[name].for_seconds == pytest.approx(rule.for_seconds / 5)
        assert (scaled[name].condition, scaled[name].severity) == (rule.condition, rule.severity)
    assert alert_rules(1.0, tmp_path) == DEMO_RULES


def test_the_users_sidecar_settings_win_except_the_upstream() -> None:
    defaults = {"SIDECAR_LOG_SINK": "file:/tmp/x.jsonl", "SIDECAR_DRIFT_MIN_SAMPLES": "100"}
    user = {
        "SIDECAR_LOG_SINK": "stdout",
        "SIDECAR_DRIFT_MIN_SAMPLES": " ",  # empty counts as unset
        "SIDECAR_UPSTREAM_URL": "http://model:8080",
        "SIDECAR_SAMPLE_RATE": "0.5",
        "HOME": "/root",
    }
    environment, notes = sidecar_environment(defaults, user, "http://127.0.0.1:5000")
    assert environment == {
        "SIDECAR_LOG_SINK": "stdout",
        "SIDECAR_DRIFT_MIN_SAMPLES": "100",
        "SIDECAR_SAMPLE_RATE": "0.5",
        "SIDECAR_UPSTREAM_URL": "http://127.0.0.1:5000",
    }
    assert notes == [
        "SIDECAR_UPSTREAM_URL from your environment is ignored: the demo proxies its own model server",
        "your environment sets SIDECAR_LOG_SINK, over the demo's defaults",
    ]


def _feature(name: str, psi: float | None, verdict: str) -> dict[str, Any]:
    return {"name": name, "verdict": verdict, "methods": [{"method": "psi", "score": psi}]}


def test_summary_parts_name_the_top_drifted_feature_the_top_violation_and_the_alerts() -> None:
    assert drift_part({"drift": None}) == "drift: waiting for data"
    calm = [_feature("income", 0.03, "no_drift"), _feature("age", 0.05, "no_drift"), _feature("x", None, "n")]
    assert drift_part({"drift": {"features": calm}}) == "drift: none (top age PSI 0.05)"
    # A feature can drift by its test and effect size with a small PSI; the top one named is a drifted one.
    shifted = [_feature("income", 0.9, "drift"), _feature("age", 0.06, "drift"), _feature("debt", 1.2, "no_drift")]
    assert drift_part({"drift": {"features": shifted}}) == "drift: 2/3 features (top income PSI 0.90)"
    violations = [
        {"feature": "age", "check": "out_of_range", "count": 40},
        {"feature": "income", "check": "type", "count": 2},
        {"feature": "debt", "check": "missing", "count": 0},
    ]
    assert quality_part({"quality": {"violations": violations}}) == "quality: 42 (top age out_of_range)"
    assert quality_part({"quality": {"violations": violations[2:]}}) == "quality: 0"
    active = [{"alert": "feature_drift", "state": "pending"}, {"alert": "data_quality_major", "state": "firing"}]
    assert alerts_part({"active": active}) == "firing: data_quality_major; 1 pending"
    assert alerts_part({"active": active[:1]}) == "alerts: 1 pending"
    assert alerts_part({"active": []}) == "alerts: none"


# demo/__main__.py's traffic rate, in requests a second.
DEMO_RATE = 30.0


async def test_v2_quotes_closer_to_the_real_risk_than_v1_and_each_server_names_its_version(tmp_path: Path) -> None:
    trained = train(tmp_path)
    # Fresh applicants, from another seed than the training set's.
    x, y = make_dataset(np.random.default_rng(12345), 1000)
    body = orjson.dumps({"instances": [instance(row) for row in x]})
    quotes: dict[str, FloatArray] = {}
    async with model_server(trained.model, "1") as v1, model_server(trained.challenger, "2") as v2:
        for version, port in (("1", v1), ("2", v2)):
            response = await predict(port, body)
            assert response.status == 200
            assert response.values("x-model-version") == [version]
            quotes[version] = np.array(orjson.loads(response.body)["predictions"])[:, 1]
    real = default_probability(x)
    error = {version: float(np.mean(np.abs(quote - real))) for version, quote in quotes.items()}
    # v1 is linear in age and misses the truth's curve in it; v2's squares follow it.
    assert error["1"] > 0.07
    assert error["2"] < 0.02
    accuracy = {version: float(np.mean((quote > 0.5) == y)) for version, quote in quotes.items()}
    assert accuracy["2"] > accuracy["1"]


def test_a_user_converts_less_often_the_further_the_quote_is_from_the_real_risk() -> None:
    real = np.array([0.1, 0.4])
    assert conversion_probability(real, real) == pytest.approx(0.6)
    assert conversion_probability(real + 0.05, real) == pytest.approx(0.2 + 0.4 / math.e)
    assert conversion_probability(np.array([0.15, 0.35]), real) == pytest.approx(0.2 + 0.4 / math.e)
    assert conversion_probability(np.array([0.9, 0.9]), real) == pytest.approx(0.2, abs=1e-5)


def _conversion_rate(model: LogisticRegression, mix: Mix, rng: np.random.Generator, users: int = 4000) -> float:
    """The expected share of users who convert on their first quote from ``model``, each with 1-4 applicants
    as the traffic sends them."""
    age = FEATURES.index("age")
    rates = []
    for _ in range(users):
        n = int(rng.integers(1, 5))
        real = sample_features(rng, n, income_shift=mix.income_shift, employment_shares=mix.employment_shares)
        sent = real.copy()
        sent[rng.random(n) < mix.age_zero_share, age] = 0.0
        rates.append(conversion_probability(model.predict_proba(sent)[:, 1], default_probability(real)))
    return float(np.mean(rates))


@pytest.mark.parametrize("mix", [CALM, SHIFT], ids=["calm", "shifted"])
def test_v2_converts_enough_more_users_for_a_decision_that_does_not_hang_on_luck(mix: Mix, tmp_path: Path) -> None:
    trained = train(tmp_path)
    rng = np.random.default_rng(21)
    v1, v2 = _conversion_rate(trained.model, mix, rng), _conversion_rate(trained.challenger, mix, rng)
    assert v2 - v1 > 0.15, (v1, v2)
    # The users 30 s of traffic brings, half in each arm: 2,000 users drawn at random, 30 requests a second.
    units = USERS * (1.0 - math.exp(-30.0 * DEMO_RATE / USERS)) / 2
    effect = compare_proportions(Proportion(int(units), units * v1), Proportion(int(units), units * v2), alpha=0.05)
    sequential = compare_proportions(
        Proportion(int(units), units * v1), Proportion(int(units), units * v2), alpha=0.05, sequential=True
    )
    # At the expected counts, the always-valid p-value, doubled as Holm may double it (conversion and accuracy),
    # is a tenth of alpha: the data of half a minute decide with room to spare, not at the edge.
    assert 2 * sequential.pvalue < 0.005, (v1, v2, sequential)
    assert effect.pvalue < sequential.pvalue  # the price of looking every few seconds


async def _conversions_of(admin_port: int) -> float:
    """The conversions the experiment's latest analysis counts, both arms together (0 before one)."""
    response = await raw_request(admin_port, "GET", "/api/v1/experiments")
    analysis = orjson.loads(response.body)["experiments"][0]["analysis"]
    if analysis is None:
        return 0.0
    [conversion] = [metric for metric in analysis["metrics"] if metric["name"] == "conversion"]
    return float(sum(arm["n"] * (arm["mean"] or 0.0) for arm in conversion["arms"]))


async def test_a_conversion_posted_before_the_users_prediction_is_stored_is_sent_again(tmp_path: Path) -> None:
    trained = train(tmp_path, rows=5_000)
    async with model_server(trained.model, "1") as v1, model_server(trained.challenger, "2") as v2:
        env = {
            "SIDECAR_EXPERIMENT_PATH": str(experiment_definition(tmp_path, f"http://127.0.0.1:{v2}")),
            "SIDECAR_EXPERIMENT_INTERVAL_SECONDS": "1",
            "SIDECAR_ADMIN_TOKEN": "demo-token",
        }
        async with run_sidecar(f"http://127.0.0.1:{v1}", env) as sidecar:
            admin = UpstreamClient(
                f"http://127.0.0.1:{sidecar.admin_port}", timeout=10.0, connect_timeout=2.0, max_connections=1
            )
            await admin.open()
            conversions = Conversions(admin, "demo-token", delay=(0.0, 0.0))
            stop = asyncio.Event()
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(conversions.run(stop))
                    # u-17 converts before the sidecar has seen u-17: the first post, a second from now,
                    # finds no prediction of the user's and is unmatched.
                    conversions.convert("u-17")
                    await asyncio.sleep(1.5)
                    body = orjson.dumps({"instances": [instance(sample_features(np.random.default_rng(5), 1)[0])]})
                    user = [*JSON, ("x-user-id", "u-17")]
                    assert (await raw_request(sidecar.proxy_port, "POST", PREDICT_PATH, user, body)).status == 200
                    async with asyncio.timeout(10):
                        # A later attempt joins it, and the analysis counts it.
                        while await _conversions_of(sidecar.admin_port) < 1:
                            await asyncio.sleep(0.2)
                    stop.set()
            finally:
                await admin.close()
            assert await _conversions_of(sidecar.admin_port) == pytest.approx(1.0)


def test_the_experiment_splits_the_demo_users_by_header_half_and_half(tmp_path: Path) -> None:
    experiment = load_experiment(experiment_definition(tmp_path, "http://127.0.0.1:5001"))
    assert [(v.name, v.weight, v.upstream) for v in experiment.variants] == [
        ("v1", 0.5, None),
        ("v2", 0.5, "http://127.0.0.1:5001"),
    ]
    assert experiment.assignment.key == ("header", "x-user-id")
    assert (experiment.mode, experiment.sequential, experiment.correction) == ("split", True, "holm")
    metrics = experiment.metrics
    assert [(m.name, m.source, m.kind) for m in metrics.primary] == [("conversion", "outcome", "proportion")]
    assert [(m.name, m.source) for m in metrics.secondary] == [("accuracy", "label")]
    assert {g.name for g in metrics.guardrails} == {"error_rate", "latency_p95_ms"}
    # The population splits evenly by the hash: the sample-ratio check has nothing to find in it.
    assigner = Assigner.of(experiment)
    arms = [assigner.assign(f"u-{i}".encode()).index for i in range(USERS)]
    counts = tuple(np.bincount(arms, minlength=2).tolist())
    assert min(counts) > 0.45 * USERS
    assert not srm(counts, [0.5, 0.5]).mismatch


def _experiments(analysis: dict[str, Any] | None, status: str = "evaluated") -> dict[str, Any]:
    """A ``GET /api/v1/experiments`` body around ``analysis``, with the keys the summary reads."""
    return {"experiments": [{"name": "credit-risk-v2", "status": status, "analysis": analysis}]}


def test_the_summary_names_the_decision_the_units_per_arm_and_the_primary_lift(tmp_path: Path) -> None:
    experiment = load_experiment(experiment_definition(tmp_path, "http://127.0.0.1:5001"))
    serving = (Serving(700, 0.0, 4.0), Serving(690, 0.0, 4.2))
    # Per unit (n, Σy, Σx, Σy², Σx², Σxy): 87 of 300 users converted with v1, 166 of 296 with v2.
    sums = [[300, 87, 300, 87, 300, 87], [296, 166, 296, 166, 296, 166]]
    data = ExperimentData(
        since=0.0,
        routing=Routing(keyed=(700, 690), randomised=(0, 0)),
        captured=(300, 296),
        serving=serving,
        metrics={"conversion": MetricData.of_totals(sums, per_unit=True)},
    )
    decided = experiment_part(_experiments(snapshot_json(analyse(experiment, data, now=60.0))))
    assert re.fullmatch(
        r"experiment: roll_out v2 \(units v1 300, v2 296; conversion lift \+93% \[\+\d+%, \+\d+%\] p 2\.2e-05\)",
        decided,
    ), decided
    empty = ExperimentData(0.0, Routing((0, 0), (0, 0)), (0, 0), serving)
    waiting = experiment_part(_experiments(snapshot_json(analyse(experiment, empty, now=60.0))))
    assert waiting == "experiment: keep_running (units v1 0, v2 0; conversion lift n/a)"
    assert experiment_part(_experiments(None, "pending")) == "experiment: pending"
    assert experiment_part({"experiments": []}) == "experiment: none"


def test_the_demo_imports_no_dev_only_package() -> None:
    # A fresh interpreter: what the demo's modules pull in, and nothing the tests loaded.
    probe = (
        "import sys, demo.environment, demo.experiment, demo.model_server, demo.scenario, demo.summary, demo.traffic, "
        "demo.training, sidecar.server; print(*sorted({m.split('.')[0] for m in sys.modules}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert {"demo", "sidecar", "numpy", "starlette"} <= loaded
    assert loaded.isdisjoint(DEV_ONLY)


@dataclass
class Demo:
    process: asyncio.subprocess.Process
    proxy_port: int
    admin_port: int
    output: asyncio.Task[tuple[bytes, bytes]]


def _free_ports(n: int) -> list[int]:
    # All bound at once so that they differ; closed before the demo binds them.
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def _python() -> str:
    """The interpreter ``make demo`` uses: the runtime venv's when ``make test`` names it."""
    runtime = os.environ.get("SIDECAR_RUNTIME_VENV")
    return str(Path(runtime).resolve() / "bin" / "python") if runtime else sys.executable


@asynccontextmanager
async def run_demo(seconds: float, **settings: str) -> AsyncIterator[Demo]:
    proxy_port, admin_port = _free_ports(2)
    # The user's SIDECAR_* would change the demo under test, as they are meant to change the real one.
    env = {name: value for name, value in os.environ.items() if not name.startswith("SIDECAR_")}
    env |= {
        "DEMO_SECONDS": str(seconds),
        "DEMO_PROXY_PORT": str(proxy_port),
        "DEMO_ADMIN_PORT": str(admin_port),
        **settings,
    }
    process = await asyncio.create_subprocess_exec(
        _python(),
        "-m",
        "demo",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    # Reading both pipes from the start keeps a chatty demo from blocking on a full pipe.
    demo = Demo(process, proxy_port, admin_port, asyncio.create_task(process.communicate()))
    try:
        yield demo
    finally:
        if process.returncode is None:
            process.kill()
        await demo.output


async def wait_for_ok_requests(demo: Demo) -> float:
    """Poll ``/metrics`` until it counts a proxied 200 or the demo exits; the count seen (0 if none)."""
    while not demo.output.done():
        try:
            ok = (await scrape(demo.admin_port)).get(OK_REQUESTS, 0.0)
        except OSError:  # not listening yet
            ok = 0.0
        if ok > 0:
            return ok
        await asyncio.sleep(0.2)
    return 0.0


async def admin_json(demo: Demo, path: str) -> Any:
    response = await raw_request(demo.admin_port, "GET", path)
    assert response.status == 200, response
    return orjson.loads(response.body)


@pytest.mark.slow
async def test_demo_serves_traffic_through_the_sidecar_then_stops_after_demo_seconds() -> None:
    async with run_demo(seconds=4) as demo:
        async with asyncio.timeout(30):
            ok = await wait_for_ok_requests(demo)
            stdout, stderr = await demo.output
    assert demo.process.returncode == 0, stderr.decode()
    assert ok > 0
    text = stdout.decode()
    assert f"http://127.0.0.1:{demo.proxy_port}{PREDICT_PATH}" in text
    assert f"http://127.0.0.1:{demo.admin_port}/metrics" in text
    assert "stopping: " in text and " 0 errors" in text
    # Prediction logs go to a file, not to the terminal.
    assert '"request_id"' not in text


@pytest.mark.slow
async def test_demo_stops_gracefully_on_sigint_and_takes_the_users_sidecar_settings() -> None:
    # The user asks for the prediction log on the terminal, over the demo's file.
    async with run_demo(seconds=0, SIDECAR_LOG_SINK="stdout") as demo:
        async with asyncio.timeout(30):
            assert await wait_for_ok_requests(demo) > 0
            demo.process.send_signal(signal.SIGINT)
            stdout, stderr = await demo.output
    assert demo.process.returncode == 0, stderr.decode()
    text = stdout.decode()
    assert "stopping: " in text
    assert "demo: your environment sets SIDECAR_LOG_SINK, over the demo's defaults" in text
    assert "  prediction log  stdout\n" in text
    assert '"request_id"' in text


@pytest.mark.slow
async def test_a_bad_sidecar_setting_from_the_environment_stops_the_demo() -> None:
    async with run_demo(seconds=0, SIDECAR_DRIFT_MIN_SAMPLES="many") as demo:
        async with asyncio.timeout(30):
            stdout, stderr = await demo.output
    assert demo.process.returncode == 2, stdout.decode() + stderr.decode()
    assert "SIDECAR_DRIFT_MIN_SAMPLES='many' is not valid" in stderr.decode()


SPEED = 5.0
# What the shift fires first: its quality violations and its feature drift.
FIRST_ALERTS = {"data_quality_major", "feature_drift"}
SUMMARY = re.compile(
    r"^ *(?P<elapsed>\d+)s (?P<phase>calm|shifted) +(?P<requests>\d+) req [\d.]+/s (?P<errors>\d+) errors"
    r"(?: p50 [\d.]+ms p99 [\d.]+ms)? \| (?P<drift>drift: [^|]+) \| (?P<quality>quality: [^|]+)"
    r" \| (?P<alerts>[^|]+) \| (?P<experiment>experiment: [^|]+)$"
)
ROLLED_OUT = re.compile(
    r"experiment: roll_out v2 \(units v1 \d+, v2 \d+; conversion lift \+\d+% \[[+-]\d+%, \+\d+%\] p [\d.e-]+\)"
)


async def wait_for_decision(demo: Demo, decision: str) -> dict[str, Any]:
    """Poll ``/api/v1/experiments`` until the experiment's decision is ``decision``; its entry then."""
    while True:
        assert not demo.output.done(), "the demo stopped early"
        entry: dict[str, Any]
        [entry] = (await admin_json(demo, "/api/v1/experiments"))["experiments"]
        if entry["analysis"] is not None and entry["analysis"]["decision"]["decision"] == decision:
            return entry
        await asyncio.sleep(0.5)


def _check_the_analysis(analysis: dict[str, Any]) -> None:
    """v2 rolls out on conversions, with nothing that would make the comparison unfair or unsafe."""
    assert analysis["decision"]["variants"] == ["v2"], analysis["decision"]
    arms = {arm["name"]: arm for arm in analysis["arms"]}
    assert arms["v1"]["control"] and not arms["v2"]["control"]
    for arm in arms.values():
        assert arm["captured_units"] > 100, arm
        # Every request named its user: none was routed by a coin.
        assert arm["routed"]["keyed"] > 0 and arm["routed"]["randomised"] == 0, arm
    assert not any(check["mismatch"] for check in analysis["srm"].values()), analysis["srm"]
    assert not any(guardrail["breached"] for guardrail in analysis["guardrails"]), analysis["guardrails"]
    [conversion] = [metric for metric in analysis["metrics"] if metric["role"] == "primary"]
    [effect] = conversion["effects"]
    assert conversion["per_unit"] and effect["sequential"]
    assert effect["ci_low"] > 0 and effect["pvalue_adjusted"] < 0.05, effect


def _check_each_user_saw_one_version(log: Path) -> None:
    """Every row of the prediction log: the user (the end of the request id) stays in one arm, and the arm's own
    server answered (its ``x-model-version``)."""
    arms: dict[str, set[str]] = {}
    requests: Counter[str] = Counter()
    with log.open("rb") as lines:
        for line in lines:
            record = orjson.loads(line)
            user = record["request_id"].split("-", 2)[2]
            arms.setdefault(user, set()).add(record["variant"])
            assert record["model_version"] == record["variant"].removeprefix("v"), record
            requests[user] += record["row"] == 0
    assert {variant for seen in arms.values() for variant in seen} == {"v1", "v2"}
    assert [user for user, seen in arms.items() if len(seen) > 1] == []
    # Users come back, so the check covers users seen several times.
    assert sum(n > 1 for n in requests.values()) > 50, requests.most_common(3)


@pytest.mark.slow
async def test_the_demo_shows_drift_a_quality_violation_a_firing_alert_and_an_experiment_rolling_out_v2(
    tmp_path: Path,
) -> None:
    # Five times faster than `make demo`: calm for 6 s, a 6 s window evaluated every second, `for` of 2-6 s,
    # the experiment analysed every second.
    drifted: list[str] = []
    violations = 0
    firing: list[str] = []
    log = tmp_path / "predictions.jsonl"
    async with run_demo(seconds=0, DEMO_SPEED=str(SPEED), SIDECAR_LOG_SINK=f"file:{log}") as demo:
        async with asyncio.timeout(60):
            assert await wait_for_ok_requests(demo) > 0
            while not (drifted and violations and FIRST_ALERTS & set(firing)):
                assert not demo.output.done(), "the demo stopped early"
                drift = (await admin_json(demo, "/api/v1/drift"))["drift"]
                drifted = [f["name"] for f in drift["features"] if f["verdict"] == "drift"] if drift else []
                quality = (await admin_json(demo, "/api/v1/quality"))["quality"]["violations"]
                violations = next(v["count"] for v in quality if (v["feature"], v["check"]) == ("age", "out_of_range"))
                alerts = (await admin_json(demo, "/api/v1/alerts"))["active"]
                firing = [a["alert"] for a in alerts if a["state"] == "firing"]
                await asyncio.sleep(0.5)
        # The experiment waits for users and their conversions, which no speed makes come faster.
        async with asyncio.timeout(60):
            experiment = await wait_for_decision(demo, "roll_out")
        async with asyncio.timeout(30):
            demo.process.send_signal(signal.SIGINT)
            stdout, stderr = await demo.output
    assert demo.process.returncode == 0, stderr.decode()
    assert {"income", "employment"} <= set(drifted)
    assert violations > 0
    assert "serving_errors_high" not in firing
    _check_the_analysis(experiment["analysis"])
    _check_each_user_saw_one_version(log)

    first, *rest = stdout.decode().splitlines()
    assert first == f"ml-sidecar demo: status page http://127.0.0.1:{demo.admin_port}/"
    lines = [match for line in rest if (match := SUMMARY.match(line.removeprefix("stopping: ")))]
    calm = [m for m in lines if m["phase"] == "calm"]
    shifted = [m for m in lines if m["phase"] == "shifted"]
    # A line every second at this speed: several of each phase.
    assert len(calm) >= 3 and len(shifted) >= 3, rest
    assert all(m["errors"] == "0" for m in lines)
    # While calm the traffic is like the training data: nothing drifts and nothing fires.
    for m in calm:
        assert m["drift"].startswith(("drift: none", "drift: waiting")), m[0]
        assert m["alerts"] == "alerts: none", m[0]
    last = shifted[-1]
    assert re.match(r"drift: \d/6 features \(top (income|employment) PSI ", last["drift"]), last[0]
    assert last["quality"].startswith("quality: ") and "(top age out_of_range)" in last["quality"], last[0]
    assert last["alerts"].startswith("firing: "), last[0]
    assert int(last["requests"]) > int(calm[-1]["requests"])
    # The summary said the decision as the API did.
    assert any(ROLLED_OUT.fullmatch(m["experiment"]) for m in shifted), [m["experiment"] for m in shifted]
    # Prediction logs go to a file, not to the terminal.
    assert '"request_id"' not in stdout.decode()
