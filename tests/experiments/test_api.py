"""``GET /api/v1/experiments`` and ``POST /api/v1/outcomes`` on a real uvicorn server, over a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette

from sidecar.experiments.api import experiment_routes
from sidecar.experiments.data import Serving
from sidecar.experiments.definition import Experiment, experiment_from_mapping
from sidecar.experiments.pairing import ShadowPairing
from sidecar.experiments.runner import ExperimentRunner
from sidecar.experiments.shadow_runner import ShadowRunner
from sidecar.experiments.view import snapshot_json
from sidecar.performance import PerformanceConfig
from sidecar.protocols import AdapterOptions
from sidecar.store import PredictionStore
from tests.experiments.scenario import MODEL, definition, exposures, routing, served, serving
from tests.http import RawResponse, raw_request
from tests.servers import run_server
from tests.store.support import T0, Clock, opened

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token"
AUTH = [("authorization", f"Bearer {TOKEN}"), ("content-type", "application/json")]
MAX_BYTES = 64 * 1024


@asynccontextmanager
async def admin(
    runner: ExperimentRunner | ShadowRunner | None,
    store: PredictionStore,
    experiment: Experiment | None,
    *,
    token: str | None = TOKEN,
    max_bytes: int = MAX_BYTES,
) -> AsyncIterator[int]:
    """The routes mounted in an app of their own, as the admin app mounts them; yield its port."""
    routes = experiment_routes(runner, store, experiment, admin_token=token, max_bytes=max_bytes)
    async with run_server(Starlette(routes=routes)) as port:
        yield port


async def get(port: int) -> dict[str, Any]:
    response = await raw_request(port, "GET", "/api/v1/experiments")
    assert response.status == 200 and response.values("content-type") == ["application/json"]
    body: dict[str, Any] = orjson.loads(response.body)
    return body


async def post(port: int, body: Any, headers: list[tuple[str, str]] | None = None) -> RawResponse:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return await raw_request(port, "POST", "/api/v1/outcomes", AUTH if headers is None else headers, data)


def runner_over(store: PredictionStore, experiment: Experiment, records: list[Any]) -> ExperimentRunner:
    _, servings = serving()
    return ExperimentRunner(
        store,
        experiment,
        PerformanceConfig(task="classification", min_labels=1),
        routing=lambda: routing(records),
        serving=lambda: servings,
        model=MODEL,
        clock=Clock(T0),
    )


async def test_the_experiment_is_listed_pending_then_with_its_analysis(tmp_path: Path) -> None:
    experiment = definition()
    records = exposures({"control": 400, "treatment": 400})
    async with opened(tmp_path, buffer_rows=5_000) as store:
        await served(store, experiment, records, {"control": 0.1, "treatment": 0.3})
        runner = runner_over(store, experiment, records)
        async with admin(runner, store, experiment) as port:
            [pending] = (await get(port))["experiments"]
            assert pending == {
                "name": "ranker-v2",
                "status": "pending",
                "started_at": None,
                "evaluated_at": None,
                "failures": {"store": 0, "error": 0},
                "definition": {
                    "name": "ranker-v2",
                    "mode": "split",
                    "variants": [
                        {"name": "control", "weight": 0.5, "control": True, "upstream": None},
                        {"name": "treatment", "weight": 0.5, "control": False, "upstream": "http://challenger"},
                    ],
                    "assignment_key": "header:x-user-id",
                    "metrics": {
                        "primary": [
                            {
                                "name": "conversion",
                                "source": "outcome",
                                "kind": "proportion",
                                "goal": "increase",
                                "mde": 0.02,
                            }  # fmt: skip
                        ],
                        "secondary": [],
                        "guardrails": [{"name": "error_rate", "max_increase": 0.05}],
                    },
                    "alpha": 0.05,
                    "correction": "holm",
                    "power": 0.8,
                    "mde": 0.02,
                    "sequential": False,
                    "segment_by": "header:x-country",
                },
                "analysis": None,
                "shadow": None,
            }
            snapshot = await runner.evaluate()
            assert snapshot is not None
            [evaluated] = (await get(port))["experiments"]
    assert evaluated["status"] == "evaluated"
    assert evaluated["started_at"] == evaluated["evaluated_at"] == "2025-11-26T08:10:38.000Z"
    assert evaluated["definition"] == pending["definition"]
    # The analysis is the view of the published snapshot, as JSON carries it.
    assert evaluated["analysis"] == orjson.loads(orjson.dumps(snapshot_json(snapshot)))
    assert evaluated["analysis"]["decision"]["decision"] == "roll_out"
    assert evaluated["shadow"] is None  # a split experiment's analysis only


async def test_without_an_experiment_the_list_is_empty_and_outcomes_have_nothing_to_join(tmp_path: Path) -> None:
    async with opened(tmp_path) as store, admin(None, store, None) as port:
        assert await get(port) == {"experiments": []}
        refused = await post(port, {"unit": "u-1", "metric": "conversion", "value": 1})
        assert refused.status == 409
        assert orjson.loads(refused.body) == {
            "error": "no experiment is running (SIDECAR_EXPERIMENT_PATH is not set): outcomes join nothing"
        }
        # Authentication still comes first.
        assert (await post(port, {}, headers=[])).status == 401


async def test_a_shadow_experiment_is_listed_not_analysed_with_its_upstream_masked(tmp_path: Path) -> None:
    shadow = experiment_from_mapping(
        {
            "name": "shadow-v2",
            "mode": "shadow",
            "variants": {"control": {}, "challenger": {"upstream": "http://ml:hunter2@challenger:8080"}},
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.02,
        }
    )
    async with opened(tmp_path) as store, admin(None, store, shadow) as port:
        [entry] = (await get(port))["experiments"]
        # Outcomes need an outcome metric, which a shadow experiment cannot have.
        refused = await post(port, {"unit": "u-1", "metric": "conversion", "value": 1})
    assert (entry["status"], entry["analysis"], entry["definition"]["assignment_key"]) == ("not_analysed", None, None)
    assert entry["shadow"] is None  # no comparison was given
    assert entry["definition"]["variants"] == [
        {"name": "control", "weight": None, "control": True, "upstream": None},
        {"name": "challenger", "weight": None, "control": False, "upstream": "http://ml:***@challenger:8080"},
    ]
    assert "hunter2" not in str(entry)
    assert refused.status == 422 and "has no outcome metrics" in orjson.loads(refused.body)["error"]


async def test_a_shadow_experiment_with_its_comparison_is_pending_then_evaluated(tmp_path: Path) -> None:
    shadow = experiment_from_mapping(
        {
            "name": "shadow-v2",
            "mode": "shadow",
            "variants": {"control": {}, "challenger": {"upstream": "http://challenger:8080"}},
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.02,
        }
    )
    async with opened(tmp_path) as store:
        pairing = ShadowPairing(shadow, AdapterOptions(), store.add_shadow, model_name=MODEL)
        runner = ShadowRunner(
            store, shadow, PerformanceConfig(min_labels=1), pairing=pairing, serving=lambda: Serving(0, 0.0, 0.0),
            clock=Clock(T0),
        )  # fmt: skip
        async with admin(runner, store, shadow) as port:
            [pending] = (await get(port))["experiments"]
            await runner.evaluate()
            [evaluated] = (await get(port))["experiments"]
    assert (pending["status"], pending["analysis"], pending["shadow"], pending["evaluated_at"]) == (
        "pending",
        None,
        None,
        None,
    )
    assert (evaluated["status"], evaluated["analysis"]) == ("evaluated", None)
    assert evaluated["started_at"] == evaluated["evaluated_at"] == "2025-11-26T08:10:38.000Z"
    assert evaluated["shadow"]["pairing"]["control_rows"] == 0 and evaluated["shadow"]["pairing"]["rate"] is None
    assert evaluated["definition"] == pending["definition"] and evaluated["definition"]["mode"] == "shadow"


async def test_posting_outcomes_answers_per_item_and_a_repeat_changes_nothing(tmp_path: Path) -> None:
    experiment = definition(
        metrics={
            "primary": [{"name": "conversion", "source": "outcome", "kind": "proportion"}],
            "secondary": [{"name": "revenue", "source": "outcome", "kind": "mean"}],
        }
    )
    records = exposures({"control": 2, "treatment": 2})  # users control-0, control-1 (two visits), treatment-...
    body = [
        {"unit": "treatment-1", "metric": "conversion", "value": True},
        {"request_id": "control-1-1", "metric": "revenue", "value": 12.5, "timestamp": "2025-11-26T09:00:00Z"},
        {"unit": 17, "metric": "conversion", "value": 1},  # nobody's unit
        {"unit": "treatment-1", "metric": "conversion", "value": 0},  # the same key again in one batch
    ]
    async with opened(tmp_path) as store, admin(None, store, experiment) as port:
        store.add(records)
        first = await post(port, body)
        again = await post(port, body)
        counts = store.counts().outcomes
    assert first.status == 200
    assert orjson.loads(first.body) == {
        "joined": 2,
        "unmatched": 1,
        "duplicate": 1,
        "invalid": 0,
        "items": [
            {"unit": "treatment-1", "metric": "conversion", "outcome": "joined", "variant": "treatment"},
            {"request_id": "control-1-1", "row": None, "metric": "revenue", "outcome": "joined", "variant": "control"},
            {
                "unit": "17",
                "metric": "conversion",
                "outcome": "unmatched",
                "reason": "no stored prediction of the experiment's arms has that unit",
            },
            {"unit": "treatment-1", "metric": "conversion", "outcome": "duplicate"},
        ],
    }
    # Idempotent: the same body again stores nothing new.
    repeat = orjson.loads(again.body)
    assert (again.status, repeat["joined"], repeat["duplicate"], repeat["unmatched"]) == (200, 0, 3, 1)
    assert counts == {"joined": 2, "unmatched": 2, "duplicate": 4, "invalid": 0}


@pytest.mark.parametrize(
    ("headers", "token", "status", "error"),
    [
        ([], TOKEN, 401, "authentication required: send Authorization: Bearer $SIDECAR_ADMIN_TOKEN"),
        ([("authorization", "Bearer wrong")], TOKEN, 403, "the bearer token is not SIDECAR_ADMIN_TOKEN"),
        ([("authorization", f"Basic {TOKEN}")], TOKEN, 403, "the bearer token is not SIDECAR_ADMIN_TOKEN"),
        (
            [("authorization", f"Bearer {TOKEN}")],
            None,
            403,
            "this endpoint is disabled: SIDECAR_ADMIN_TOKEN is not set",
        ),
    ],
)
async def test_outcomes_need_the_admin_token(
    tmp_path: Path, headers: list[tuple[str, str]], token: str | None, status: int, error: str
) -> None:
    async with opened(tmp_path) as store, admin(None, store, definition(), token=token) as port:
        store.add(exposures({"treatment": 1}))
        response = await post(port, {"unit": "treatment-0", "metric": "conversion", "value": 1}, headers=headers)
        assert store.counts().outcomes["joined"] == 0
    assert (response.status, orjson.loads(response.body)) == (status, {"error": error})
    if status == 401:
        assert response.values("www-authenticate") == ['Bearer realm="ml-sidecar"']


@pytest.mark.parametrize(
    ("body", "status", "error", "problems"),
    [
        (b'{"unit": "u-1", ', 400, "the body is not valid JSON", None),
        (b"x" * (2 * 1024), 413, "the body is larger than SIDECAR_LABELS_MAX_BYTES=1024 bytes", None),
        (
            orjson.dumps([{"unit": "u-1", "metric": "revenue", "value": 1}, {"unit": "u-2", "metric": "conversion"}]),
            422,
            "2 problem(s) in the outcomes; nothing was stored",
            [
                "[0].metric: 'revenue' is not an outcome metric of experiment 'ranker-v2'; expected one of: conversion",
                "[1].value: conversion is a proportion: expected 0, 1, false or true; got null",
            ],
        ),
        (
            orjson.dumps([{"unit": "u", "metric": "conversion", "value": 1}] * 10_001),
            413,
            "at most 10000 per request",
            None,
        ),
    ],
)
async def test_a_body_that_cannot_be_used_is_refused_whole(
    tmp_path: Path, body: bytes, status: int, error: str, problems: list[str] | None
) -> None:
    max_bytes = 1024 if status == 413 and len(body) < 4096 else 1 << 20
    async with opened(tmp_path) as store, admin(None, store, definition(), max_bytes=max_bytes) as port:
        response = await post(port, body)
        assert store.counts().outcomes == {"joined": 0, "unmatched": 0, "duplicate": 0, "invalid": 0}
    answer = orjson.loads(response.body)
    assert response.status == status
    assert error in answer["error"]
    assert answer.get("problems") == problems


async def test_a_store_that_cannot_take_them_answers_503_and_stores_nothing(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        pass  # closed: every call refuses, as a database that cannot be reached does
    async with admin(None, store, definition()) as port:
        response = await post(port, {"unit": "treatment-0", "metric": "conversion", "value": 1})
    assert response.status == 503
    assert response.values("retry-after") == ["5"]
    assert orjson.loads(response.body) == {
        "error": "the prediction store could not take the outcomes; nothing was stored, retry later"
    }
