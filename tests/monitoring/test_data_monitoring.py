"""Data monitoring end to end: a profile built by the CLI, a real sidecar, drift and quality on /metrics."""

from __future__ import annotations

import asyncio
import csv
import math
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from sidecar.server import Sidecar
from tests.http import raw_request, scrape
from tests.servers import read_body, run_server, run_sidecar

# These tests read the monitoring objects themselves (snapshots), which in the default process mode live
# in the monitoring process (tests/plane covers that path end to end).
pytestmark = [pytest.mark.anyio, pytest.mark.monitoring_inline]

Scope = dict[str, Any]
COUNTRIES = ("DE", "FR", "US")
COUNTRY_SHARES = (0.5, 0.3, 0.2)
EVAL = "0.1"


async def scorer(scope: Scope, receive: Any, send: Any) -> None:
    """A KServe V1 model: P(positive) = sigmoid(income / 10 − 5) for each named instance."""
    instances = orjson.loads(await read_body(receive))["instances"]
    predictions = []
    for row in instances:
        try:
            p = _p_positive(float(row["income"]))
        except (KeyError, TypeError, ValueError):
            p = 0.5
        predictions.append([1 - p, p])
    payload = orjson.dumps({"predictions": predictions})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _p_positive(income: float) -> float:
    return 1 / (1 + math.exp(-(income / 10 - 5)))


def _rows(
    n: int, seed: int, *, income_shift: float = 0.0, shares: tuple[float, ...] = COUNTRY_SHARES
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    income = rng.normal(50.0 + income_shift * 10.0, 10.0, n)
    age = rng.normal(40.0, 12.0, n)
    country = rng.choice(COUNTRIES, size=n, p=shares)
    return [
        {"income": round(float(i), 3), "age": round(float(a), 3), "country": str(c)}
        for i, a, c in zip(income, age, country, strict=True)
    ]


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("reference")
    data, output = directory / "train.csv", directory / "reference.json"
    with data.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["income", "age", "country", "prediction", "confidence"])
        writer.writeheader()
        for row in _rows(20_000, seed=1):
            # The model's own outputs on the training data, as the scorer gives them.
            p = _p_positive(row["income"])
            writer.writerow({**row, "prediction": int(p >= 0.5), "confidence": max(p, 1 - p)})
    command = ["profile", "build", str(data), "--output", str(output), "--categorical", "prediction"]
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", *command, "--prediction", "prediction", "--confidence", "confidence"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return output


@asynccontextmanager
async def monitored(profile: Path, **env: str) -> AsyncIterator[Sidecar]:
    settings = {
        "SIDECAR_REFERENCE_PATH": str(profile),
        "SIDECAR_LOG_SINK": "none",
        "SIDECAR_EVAL_INTERVAL_SECONDS": EVAL,
        "SIDECAR_DRIFT_WINDOW_SECONDS": "600",
        "SIDECAR_DRIFT_SLICE_SECONDS": "10",
        "SIDECAR_MODEL_NAME": "credit",
        **env,
    }
    async with run_server(scorer) as port, run_sidecar(f"http://127.0.0.1:{port}", settings) as sidecar:
        yield sidecar


async def _send(sidecar: Sidecar, rows: list[dict[str, Any]], batch: int = 20) -> None:
    for start in range(0, len(rows), batch):
        body = orjson.dumps({"instances": rows[start : start + batch]})
        response = await raw_request(sidecar.proxy_port, "POST", "/v1/models/credit:predict", body=body)
        assert response.status == 200


async def _get(sidecar: Sidecar, path: str) -> Any:
    return orjson.loads((await raw_request(sidecar.admin_port, "GET", path)).body)


async def _settled(sidecar: Sidecar, records: int) -> dict[str, float]:
    """/metrics once the worker has counted ``records`` rows and the evaluator has run since.

    Read through the admin API, as a user would: the monitoring may run in a process of its own.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        # Drift and quality are evaluated together, so once quality has seen
        # every record, the drift in the same snapshot has too.
        if (await _get(sidecar, "/api/v1/quality"))["quality"]["records_total"] >= records:
            return await scrape(sidecar.admin_port)
        assert loop.time() < deadline, "the evaluator did not catch up"
        await asyncio.sleep(0.05)


def _flagged(metrics: dict[str, float]) -> set[str]:
    prefix = 'mlsidecar_feature_drift_score{feature="'
    return {
        key[len(prefix) :].split('"')[0]
        for key, value in metrics.items()
        if key.startswith(prefix) and 'method="psi"' in key and value > 0.2
    }


async def test_unshifted_traffic_flags_nothing(profile_path: Path) -> None:
    async with monitored(profile_path) as sidecar:
        await _send(sidecar, _rows(2000, seed=2))
        metrics = await _settled(sidecar, 2000)
        drift = orjson.loads((await raw_request(sidecar.admin_port, "GET", "/api/v1/drift")).body)
    assert _flagged(metrics) == set()
    for feature in ("income", "age", "country"):
        assert metrics[f'mlsidecar_feature_drift_score{{feature="{feature}",method="psi",model="credit"}}'] < 0.1
    assert metrics['mlsidecar_drifted_feature_share{model="credit"}'] == 0
    assert drift["reference"]["source"] == "file"
    assert drift["drift"]["verdict"] == "no_drift"


async def test_shifted_numeric_and_rebalanced_categorical_are_exactly_the_flagged_ones(profile_path: Path) -> None:
    async with monitored(profile_path) as sidecar:
        await _send(sidecar, _rows(3000, seed=3, income_shift=0.5, shares=(0.2, 0.3, 0.5)))
        metrics = await _settled(sidecar, 3000)
        drift = orjson.loads((await raw_request(sidecar.admin_port, "GET", "/api/v1/drift")).body)["drift"]
    assert _flagged(metrics) == {"income", "country"}
    assert metrics['mlsidecar_feature_drift_pvalue{feature="income",method="ks",model="credit"}'] < 0.05
    assert metrics['mlsidecar_feature_drift_pvalue{feature="country",method="chi2",model="credit"}'] < 0.05
    # Real (Holm-corrected p) and material (effect size): the combined verdict's two questions, exported.
    assert metrics['mlsidecar_feature_drift_corrected_pvalue{feature="income",method="ks",model="credit"}'] < 0.05
    assert metrics['mlsidecar_feature_drift_corrected_pvalue{feature="country",method="chi2",model="credit"}'] < 0.05
    assert metrics['mlsidecar_feature_drift_score{feature="income",method="wasserstein",model="credit"}'] > 0.1
    assert metrics['mlsidecar_feature_drift_score{feature="age",method="wasserstein",model="credit"}'] < 0.1
    assert metrics['mlsidecar_feature_drift_score{feature="country",method="jensenshannon",model="credit"}'] > 0.1
    assert metrics['mlsidecar_prediction_drift_pvalue{method="chi2",model="credit",output="prediction"}'] < 0.05
    corrected = 'mlsidecar_prediction_drift_corrected_pvalue{method="chi2",model="credit",output="prediction"}'
    assert (
        metrics['mlsidecar_prediction_drift_pvalue{method="chi2",model="credit",output="prediction"}']
        <= (metrics[corrected])
    )
    # The prediction follows income, so the prediction distribution drifts too.
    assert metrics['mlsidecar_prediction_drift_score{method="psi",model="credit",output="prediction"}'] > 0.1
    assert metrics['mlsidecar_prediction_drift_score{method="psi",model="credit",output="confidence"}'] >= 0
    verdicts = {f["name"]: f["verdict"] for f in drift["features"]}
    assert verdicts == {"income": "drift", "age": "no_drift", "country": "drift"}
    assert drift["rule"] == {"name": "combined", "alpha": 0.05, "wasserstein": 0.1, "jensenshannon": 0.1}
    income = next(f for f in drift["features"] if f["name"] == "income")
    assert len(income["reference"]) == len(income["current"]) == len(income["labels"])
    # The bins by their edges, for people; the metrics keep the indexes.
    assert income["labels"][0].startswith("≤ ") and income["labels"][-1].startswith("> ")
    assert "–" in income["labels"][1]
    country = next(f for f in drift["features"] if f["name"] == "country")
    assert country["labels"] == ["DE", "FR", "US", "(other)"]
    assert [m["method"] for m in income["methods"]] == ["psi", "ks", "wasserstein"]
    assert income["stats"]["mean"] == pytest.approx(55.0, abs=1.0)
    # Per-bin counters add up to the traffic, and the reference gauges to 1.
    bins = [
        v
        for k, v in metrics.items()
        if k.startswith("mlsidecar_feature_bin_observations_total{bin=") and 'feature="income"' in k
    ]
    assert sum(bins) == pytest.approx(3000)
    ratios = [
        v
        for k, v in metrics.items()
        if k.startswith("mlsidecar_feature_reference_bin_ratio") and 'feature="income"' in k
    ]
    assert sum(ratios) == pytest.approx(1.0)


async def test_too_few_samples_give_no_score(profile_path: Path) -> None:
    async with monitored(profile_path) as sidecar:
        await _send(sidecar, _rows(50, seed=4, income_shift=3.0))
        metrics = await _settled(sidecar, 50)
        drift = orjson.loads((await raw_request(sidecar.admin_port, "GET", "/api/v1/drift")).body)["drift"]
    assert not any(k.startswith("mlsidecar_feature_drift_score") for k in metrics)
    assert {f["verdict"] for f in drift["features"]} == {"insufficient_data"}


async def test_each_quality_check_counts_malformed_rows(profile_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"age": 40.0, "country": "DE"},  # income missing
        {"income": 50.0, "age": 40.0, "country": "DE", "shoe_size": 44},  # unexpected feature
        {"income": "lots", "age": 40.0, "country": "DE"},  # wrong type
        {"income": None, "age": 40.0, "country": "DE"},  # null where the reference had none
        {"income": 5000.0, "age": 40.0, "country": "DE"},  # far outside the reference range
        {"income": 50.0, "age": 40.0, "country": "XX"},  # unseen category
        {"income": -20.0, "age": 40.0, "country": "DE"},  # negative, where the reference had none; also out of range
    ]
    async with monitored(profile_path) as sidecar:
        await _send(sidecar, rows, batch=1)
        metrics = await _settled(sidecar, len(rows))
        quality = orjson.loads((await raw_request(sidecar.admin_port, "GET", "/api/v1/quality")).body)["quality"]

    def count(feature: str, check: str) -> float:
        return metrics[f'mlsidecar_data_quality_violations_total{{check="{check}",feature="{feature}",model="credit"}}']

    assert count("income", "missing") == 1
    assert count("__unexpected__", "unexpected") == 1
    assert count("income", "type") == 1
    assert count("income", "null") == 1
    assert count("income", "out_of_range") == 2
    assert count("income", "negative") == 1
    assert count("country", "unseen_category") == 1
    assert count("age", "missing") == count("age", "type") == count("age", "null") == 0
    assert not any("shoe_size" in key for key in metrics), "payload names never become label values"
    assert any(example["check"] == "unseen_category" for example in quality["examples"])


async def test_metrics_with_drift_pass_promtool(profile_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool
    async with monitored(profile_path) as sidecar:
        await _send(sidecar, _rows(400, seed=5))
        await _settled(sidecar, 400)
        response = await raw_request(sidecar.admin_port, "GET", "/metrics")
    assert b"mlsidecar_feature_drift_score" in response.body
    result = subprocess.run([promtool, "check", "metrics"], input=response.body, capture_output=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, b"")


async def test_reference_is_learned_from_warm_up_traffic(tmp_path: Path) -> None:
    env = {"SIDECAR_LOG_SINK": "none", "SIDECAR_EVAL_INTERVAL_SECONDS": EVAL, "SIDECAR_REFERENCE_WARMUP": "300"}
    async with run_server(scorer) as port, run_sidecar(f"http://127.0.0.1:{port}", env) as sidecar:
        await _send(sidecar, _rows(200, seed=6))
        learning = orjson.loads((await raw_request(sidecar.admin_port, "GET", "/api/v1/drift")).body)
        assert learning["reference"]["source"] == "learning"
        await _send(sidecar, _rows(400, seed=7))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (await _get(sidecar, "/api/v1/drift"))["reference"]["source"] != "learned":
            assert loop.time() < deadline
            await asyncio.sleep(0.05)
        drift = orjson.loads((await raw_request(sidecar.admin_port, "GET", "/api/v1/drift")).body)
        metrics = await scrape(sidecar.admin_port)
    assert drift["reference"]["version"].startswith("learned-")
    assert {f["name"] for f in drift["drift"]["features"]} == {"income", "age", "country"}
    assert any(k.startswith("mlsidecar_reference_info{") for k in metrics)


async def test_bad_profile_fails_start_up_or_warns(tmp_path: Path) -> None:
    bad = tmp_path / "reference.json"
    bad.write_text('{"format": "ml-sidecar/reference-profile", "format_version": 1}')
    with pytest.raises(Exception, match="SIDECAR_REFERENCE_PATH: .*corrupt reference profile"):
        async with run_sidecar("http://127.0.0.1:9", {"SIDECAR_REFERENCE_PATH": str(bad)}):
            pass
    env = {"SIDECAR_REFERENCE_PATH": str(tmp_path / "missing.json"), "SIDECAR_REFERENCE_ON_ERROR": "warn"}
    async with run_sidecar("http://127.0.0.1:9", env) as sidecar:
        drift = orjson.loads((await raw_request(sidecar.admin_port, "GET", "/api/v1/drift")).body)
    assert drift["reference"]["source"] == "disabled"
    assert "cannot read reference profile" in drift["reference"]["problem"]
    assert drift["drift"] is None


async def test_profile_check_gives_the_verdicts_of_the_same_rows_as_live_traffic(
    profile_path: Path, tmp_path: Path
) -> None:
    """A 0.3σ shift of income: the running sidecar and ``ml-sidecar profile check`` judge the same rows alike."""
    rows = _rows(3000, seed=8, income_shift=0.3)
    async with monitored(profile_path) as sidecar:
        await _send(sidecar, rows)
        await _settled(sidecar, len(rows))
        live = (await _get(sidecar, "/api/v1/drift"))["drift"]
    data = tmp_path / "today.csv"
    with data.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["income", "age", "country", "prediction", "confidence"])
        writer.writeheader()
        for row in rows:
            # The scorer's outputs, as the proxy captured them.
            p = _p_positive(row["income"])
            writer.writerow({**row, "prediction": int(p >= 0.5), "confidence": max(p, 1 - p)})
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "profile", "check", str(profile_path), str(data), "--json"],
        capture_output=True,
        text=True,
    )
    checked = orjson.loads(result.stdout)["drift"]
    assert [f["name"] for f in live["features"] if f["verdict"] == "drift"] == ["income"]
    for mine, theirs in zip(
        [*checked["features"], *checked["outputs"]], [*live["features"], *live["outputs"]], strict=True
    ):
        assert (mine["name"], mine["verdict"], mine["labels"]) == (theirs["name"], theirs["verdict"], theirs["labels"])
        for method, same in zip(mine["methods"], theirs["methods"], strict=True):
            assert (method["method"], method["verdict"]) == (same["method"], same["verdict"])
            for key in ("score", "pvalue", "corrected_pvalue"):
                assert method[key] == (None if same[key] is None else pytest.approx(same[key], rel=1e-9))
