"""Every query of deploy/grafana/ml-sidecar.json, run by a real Prometheus that scrapes real sidecars.

Two sidecars of one model (two replicas, one reference profile) front a real model server, and a
third of the same model shadows it. The real Prometheus (Debian's) scrapes the three admin
``/metrics`` every second and evaluates ``deploy/prometheus``'s recording and alerting rules. The
recording rules keep their ``[1h]`` window; as in ``tests/integration``,
:func:`~tests.integration.stack.shortened_rules` makes every group run every second, and the
alerting rules' windows ``[1m]`` and their waits ``1s``, so that alerts fire within the test.

The traffic produces every series a panel reads, the conditional ones included:

- drift: one feature shifted by two standard deviations, 300 rows per replica, so the fleet PSI
  passes its 200-observation guard and ``feature_drift`` fires in Prometheus (``ALERTS``);
- errors: the model answers 500 to some requests on each replica;
- capture drops: one body over ``SIDECAR_CAPTURE_MAX_BYTES`` (``too_large``);
- data quality: rows with an unseen category and rows missing a feature;
- prediction logs: a file sink on each replica, as the Kubernetes example has;
- labels: every captured row gets a label on the replica that served it, 20% of them wrong, so
  accuracy, its drop against the profile's baseline and the label delay exist;
- alert notifications: each sidecar has a webhook (a path of the model server);
- ``mlsidecar_metrics_series_dropped``: the second replica runs with
  ``SIDECAR_METRICS_MAX_SERIES=100``, and the profile's 18 features give the data-quality family
  112 series, so that family, and only it, is cut there;
- the monitoring process: the sidecars run in the default process mode (``tests/servers.py``),
  so ``mlsidecar_monitor_up`` is 1 and the restarts' increase over the range is 0, which is data;
- the experiment: both replicas run one split experiment keyed by ``x-user-id`` (both arms on the
  one model server), analysed every second; the traffic above has no key, so its requests are
  assigned by a coin, and 40 users per replica send one request each, a third of whom convert
  (``/api/v1/outcomes``), so the decision, the effects and both sample-ratio checks exist;
- shadow traffic: the third sidecar runs a shadow experiment with the model server as the
  challenger, and mirrors a few requests.

Then every expression, with the dashboard's variables substituted (``$model``, ``$feature`` as
All, Grafana's ``$__rate_interval`` as 1m and ``$__range`` as 3h), goes through ``/api/v1/query``:
each must be valid and return at least one finite sample. The variables' own ``label_values``
queries must list the model and its features.
"""

from __future__ import annotations

import asyncio
import csv
import math
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson
import pytest

from tests.deploy.grafana import BUILTINS, load, queries, substitute, variables
from tests.experiments.scenario import SPLIT_BY_USER
from tests.http import raw_request
from tests.integration.stack import (
    ALERTING_RULES,
    RECORDING_RULES,
    Prometheus,
    eventually,
    run_prometheus,
    shortened_rules,
)
from tests.servers import read_body, run_server, run_sidecar

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

Scope = dict[str, Any]
Row = dict[str, Any]

MODEL = "credit"
EXPERIMENT_USERS = 40  # per replica
SHADOW = """\
name: credit-shadow
mode: shadow
variants:
  control:    {}
  challenger: {upstream: "http://127.0.0.1:%d"}
metrics:
  primary: [{name: accuracy, source: label}]
mde: 0.02
"""
FLAGS = tuple(f"f{index:02d}" for index in range(16))  # binary categorical features: 16 × 6 quality series
COUNTRIES, COUNTRY_SHARES = ("DE", "FR", "US"), (0.5, 0.3, 0.2)
ROWS_PER_REPLICA = 300
BATCH = 50
DEADLINE = 30.0  # seconds for every panel to have data; it takes a few
PACE = 0.3  # seconds between batches, several per 1 s scrape


def probability(income: float) -> float:
    return 1 / (1 + math.exp(-(income / 10 - 5)))


async def model_server(scope: Scope, receive: Any, send: Any) -> None:
    """KServe V1: P(positive) = sigmoid(income / 10 − 5); a 500 when a row asks for it; 200 to the alert webhook."""
    body = await read_body(receive)
    status, payload = 200, b"{}"
    if scope["path"] != "/alerts":
        instances = orjson.loads(body)["instances"]
        if any(row.get("fail") for row in instances):
            status, payload = 500, b'{"error": "model failed"}'
        else:
            scores = [[1 - probability(row["income"]), probability(row["income"])] for row in instances]
            payload = orjson.dumps({"predictions": scores})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def rows(n: int, seed: int, *, income_shift: float = 0.0) -> list[Row]:
    rng = np.random.default_rng(seed)
    income = rng.normal(50.0 + 10.0 * income_shift, 10.0, n)
    country = rng.choice(COUNTRIES, size=n, p=COUNTRY_SHARES)
    flags = rng.choice(["a", "b"], size=(n, len(FLAGS)))
    return [
        {"income": round(float(i), 3), "country": str(c), **dict(zip(FLAGS, map(str, f), strict=True))}
        for i, c, f in zip(income, country, flags, strict=True)
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A profile built by the CLI, with outputs and a target, so output drift and a baseline exist."""
    directory = tmp_path_factory.mktemp("reference")
    data, output = directory / "train.csv", directory / "reference.json"
    training = [
        {**row, "pred": int(p > 0.5), "proba": round(max(p, 1 - p), 4), "label": int(p > 0.5)}
        for row in rows(3000, seed=1)
        for p in [probability(row["income"])]
    ]
    with data.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(training[0]))
        writer.writeheader()
        writer.writerows(training)
    command = [sys.executable, "-m", "sidecar", "profile", "build", str(data), "--output", str(output)]
    command += ["--prediction", "pred", "--confidence", "proba", "--target", "label"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return output


def sidecar_env(reference: Path, directory: Path, model_port: int, name: str, experiment: str) -> dict[str, str]:
    """One sidecar's settings; ``experiment`` the definition it runs (SPLIT_BY_USER or SHADOW), ``%`` the model
    server in it."""
    definition = directory / f"experiment-{name}.yml"
    definition.write_text(experiment % model_port)
    return {
        "SIDECAR_MODEL_NAME": MODEL,
        "SIDECAR_REFERENCE_PATH": str(reference),
        "SIDECAR_LOG_SINK": f"file:{directory / f'predictions-{name}.jsonl'}",
        "SIDECAR_CAPTURE_MAX_BYTES": "65536",
        "SIDECAR_EVAL_INTERVAL_SECONDS": "0.2",
        "SIDECAR_DRIFT_MIN_SAMPLES": "100",
        "SIDECAR_PERF_MIN_LABELS": "20",
        "SIDECAR_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{model_port}/alerts",
        "SIDECAR_EXPERIMENT_PATH": str(definition),
        "SIDECAR_EXPERIMENT_INTERVAL_SECONDS": "1",
    }


async def predict(port: int, request_id: str, instances: list[Row], user: str | None = None) -> int:
    body = orjson.dumps({"instances": instances})
    headers = [("x-request-id", request_id), ("content-type", "application/json")]
    headers += [] if user is None else [("x-user-id", user)]
    response = await raw_request(port, "POST", f"/v1/models/{MODEL}:predict", headers, body)
    return response.status


async def fail(proxy_port: int, request_id: str) -> None:
    """One request the model answers with a 500: logged and counted, and fed to no monitor."""
    assert await predict(proxy_port, request_id, [{**rows(1, seed=0)[0], "fail": True}]) == 500


async def serve_traffic(proxy_port: int, admin_port: int, name: str, seed: int) -> None:
    """Drifted traffic, errors, a body too large to capture, quality violations, then a label for every row."""
    batch = rows(ROWS_PER_REPLICA, seed, income_shift=2.0)
    for row in batch[:10]:
        row["country"] = "XX"  # unseen_category
    for row in batch[10:20]:
        del row["f00"]  # missing
    served: dict[str, list[Row]] = {}
    for start in range(0, len(batch), BATCH):
        request_id = f"{name}-{start}"
        assert await predict(proxy_port, request_id, batch[start : start + BATCH]) == 200
        served[request_id] = batch[start : start + BATCH]
        await fail(proxy_port, f"{request_id}-fail")
        # Spread over several scrapes: a counter series that appears and stops within one scrape has
        # no rate yet (Prometheus never counts a series' first value).
        await asyncio.sleep(PACE)
    assert await predict(proxy_port, f"{name}-large", rows(400, seed + 100)) == 200  # > 64 KiB: too_large

    rng = np.random.default_rng(seed)
    labels = [
        {
            "request_id": request_id,
            "row": index,
            "label": int((probability(row["income"]) > 0.5) != (rng.random() < 0.2)),
        }
        for request_id, instances in served.items()
        for index, row in enumerate(instances)
    ]
    # The prediction store writes in the background: wait until every row can be joined.
    joined = await eventually(
        lambda: _post(admin_port, "/api/v1/labels", labels), timeout=DEADLINE, what=f"{name}: labels joined"
    )
    assert joined == len(labels)


async def _post(admin_port: int, path: str, items: list[Row]) -> int:
    """Post labels or outcomes; how many are stored once all are, else 0 (and the caller posts them again)."""
    headers = [("authorization", "Bearer test-token"), ("content-type", "application/json")]
    response = await raw_request(admin_port, "POST", path, headers, orjson.dumps(items))
    assert response.status == 200, response
    outcome = orjson.loads(response.body)
    # Both are idempotent: a second post reports the first one's items as duplicates.
    done: int = outcome["joined"] + outcome["duplicate"]
    return done if done == len(items) else 0


async def serve_users(proxy_port: int, admin_port: int, name: str, seed: int) -> None:
    """The experiment's users: one request each, routed by its x-user-id; every third one converts."""
    users = [f"{name}-u{index}" for index in range(EXPERIMENT_USERS)]
    for user, row in zip(users, rows(EXPERIMENT_USERS, seed, income_shift=2.0), strict=True):
        assert await predict(proxy_port, f"{user}-0", [row], user=user) == 200
    conversions = [{"unit": user, "metric": "conversion", "value": 1} for user in users[::3]]
    # As with the labels: an outcome joins once its user's prediction is stored.
    joined = await eventually(
        lambda: _post(admin_port, "/api/v1/outcomes", conversions), timeout=DEADLINE, what=f"{name}: outcomes joined"
    )
    assert joined == len(conversions)


async def mirror(proxy_port: int) -> None:
    """A few requests to the shadowing sidecar: each answered by control, then copied to the challenger."""
    for index in range(3):
        assert await predict(proxy_port, f"c-{index}", rows(5, seed=6 + index, income_shift=2.0)) == 200


def _finite(samples: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in samples)


async def test_every_panel_query_returns_data(tmp_path: Path, reference: Path) -> None:
    dashboard = load()
    values = {"model": MODEL, "feature": variables(dashboard)["feature"]["allValue"], **BUILTINS}
    expressions = sorted({substitute(target["expr"], values) for _, target in queries(dashboard)})
    assert len(expressions) > 40

    rule_files = [
        shortened_rules(RECORDING_RULES, tmp_path / "recording_rules.yml", window="1h"),
        shortened_rules(ALERTING_RULES, tmp_path / "alerting_rules.yml"),
    ]
    async with run_server(model_server) as model_port:
        env = {"SIDECAR_ADMIN_TOKEN": "test-token"}
        first = {**env, **sidecar_env(reference, tmp_path, model_port, "a", SPLIT_BY_USER)}
        second = {
            **env,
            **sidecar_env(reference, tmp_path, model_port, "b", SPLIT_BY_USER),
            "SIDECAR_METRICS_MAX_SERIES": "100",
        }
        shadowing = {**env, **sidecar_env(reference, tmp_path, model_port, "c", SHADOW)}
        upstream = f"http://127.0.0.1:{model_port}"
        async with (
            run_sidecar(upstream, first) as a,
            run_sidecar(upstream, second) as b,
            run_sidecar(upstream, shadowing) as c,
            run_prometheus(
                tmp_path / "prometheus",
                targets=[f"127.0.0.1:{sidecar.admin_port}" for sidecar in (a, b, c)],
                rule_files=rule_files,
            ) as prometheus,
        ):
            # Rates and increases count from a series' first scrape: Prometheus must see both replicas'
            # bin counters (at 0) and their 5xx series before the traffic that should count.
            await asyncio.gather(fail(a.proxy_port, "a-first"), fail(b.proxy_port, "b-first"))
            errors = f'mlsidecar_requests_total{{model="{MODEL}",code="500"}}'
            await eventually(
                lambda: _instances(prometheus, errors, 2), timeout=DEADLINE, what="Prometheus scraped both sidecars"
            )
            bins = f'mlsidecar_feature_bin_observations_total{{model="{MODEL}",feature="income"}}'
            assert {float(sample["value"][1]) for sample in await prometheus.query(bins)} == {0.0}
            await asyncio.gather(
                serve_traffic(a.proxy_port, a.admin_port, "a", seed=2),
                serve_traffic(b.proxy_port, b.admin_port, "b", seed=3),
                serve_users(a.proxy_port, a.admin_port, "a", seed=4),
                serve_users(b.proxy_port, b.admin_port, "b", seed=5),
                mirror(c.proxy_port),
            )
            await eventually(
                lambda: prometheus.query('ALERTS{alertname="feature_drift",alertstate="firing"}'),
                timeout=DEADLINE,
                what="feature_drift firing in Prometheus",
            )

            async def empty() -> list[str]:
                return [expr for expr in expressions if not _finite(await prometheus.query(expr))]

            missing = await _settle(empty)
            assert missing == [], await _diagnose(prometheus, missing)

            for name, variable in variables(dashboard).items():
                if variable["type"] != "query":
                    continue
                label, matcher = _label_values(substitute(variable["query"], values))
                response = await raw_request(prometheus.port, "GET", f"/api/v1/label/{label}/values?match[]={matcher}")
                found = orjson.loads(response.body)["data"]
                expected = MODEL if name == "model" else "income"
                assert expected in found, (name, found)


async def _instances(prometheus: Prometheus, expr: str, count: int) -> bool:
    return len({sample["metric"]["instance"] for sample in await prometheus.query(expr)}) == count


async def _settle(empty: Callable[[], Awaitable[list[str]]]) -> list[str]:
    """The queries still without data once they all have it, or at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while (missing := await empty()) and loop.time() < deadline:
        await asyncio.sleep(0.5)
    return missing


_LABEL_VALUES = re.compile(r"^label_values\((?P<matcher>.+),\s*(?P<label>\w+)\)$")


def _label_values(query: str) -> tuple[str, str]:
    """Grafana's ``label_values(selector, label)`` as the label API's label and ``match[]``."""
    match = _LABEL_VALUES.match(query)
    assert match, query
    return match["label"], quote(match["matcher"])


async def _diagnose(prometheus: Prometheus, missing: list[str]) -> str:
    rules = [(rule["name"], rule.get("lastError")) for rule in await prometheus.rules() if rule["health"] == "err"]
    return "\n".join(
        [
            "queries without a finite sample:",
            *missing,
            f"rules in error: {rules}",
            f"prometheus log:\n{prometheus.process.log_tail()}",
        ]
    )
