"""Delayed labels end to end: a real sidecar, a real model stand-in, labels posted over HTTP.

The expected metrics are scikit-learn's on the same joined data, computed here
from the ground truth the test generated, not from anything the sidecar returns.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from sklearn import metrics as skm  # type: ignore[import-untyped]

from sidecar.server import Sidecar
from tests.http import raw_request, scrape
from tests.servers import Scope, read_body, run_server, run_sidecar

# These tests read the monitoring objects themselves (subscribers, snapshots, the store, the sinks), which
# in the default process mode live in the monitoring process (tests/plane covers that path end to end).
pytestmark = [pytest.mark.anyio, pytest.mark.monitoring_inline]

TOKEN = "s3cret-token"
AUTH = [("authorization", f"Bearer {TOKEN}"), ("content-type", "application/json")]
ROWS_PER_REQUEST = 10
MODEL = "churn"


async def scorer(scope: Scope, receive: Any, send: Any) -> None:
    """A KServe V1 binary classifier: P(1) = sigmoid(x) for each instance ``{"x": ...}``."""
    instances = orjson.loads(await read_body(receive))["instances"]
    predictions = [[1 - _p(row["x"]), _p(row["x"])] for row in instances]
    payload = orjson.dumps({"predictions": predictions})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _p(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@asynccontextmanager
async def labelled_sidecar(state_dir: Path, **env: str) -> AsyncIterator[Sidecar]:
    settings = {
        "SIDECAR_STATE_DIR": str(state_dir),
        "SIDECAR_ADMIN_TOKEN": TOKEN,
        "SIDECAR_LOG_SINK": "none",
        "SIDECAR_MODEL_NAME": MODEL,
        "SIDECAR_POSITIVE_LABEL": "1",
        "SIDECAR_PERF_MIN_LABELS": "50",
        "SIDECAR_EVAL_INTERVAL_SECONDS": "0.1",
        **env,
    }
    async with run_server(scorer) as port, run_sidecar(f"http://127.0.0.1:{port}", settings) as sidecar:
        yield sidecar


async def predict(sidecar: Sidecar, requests: int, seed: int = 0) -> dict[tuple[str, int], float]:
    """Send ``requests`` batch requests of 10 rows; the x of every (request id, row)."""
    rng = random.Random(seed)
    sent: dict[tuple[str, int], float] = {}
    gate = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        xs = [round(rng.gauss(0.0, 2.0), 4) for _ in range(ROWS_PER_REQUEST)]
        request_id = f"req-{seed}-{i}"
        body = orjson.dumps({"instances": [{"x": x} for x in xs]})
        async with gate:
            response = await raw_request(
                sidecar.proxy_port, "POST", f"/v1/models/{MODEL}:predict", [("x-request-id", request_id)], body
            )
        assert response.status == 200, response
        sent.update({(request_id, row): x for row, x in enumerate(xs)})

    await asyncio.gather(*(one(i) for i in range(requests)))
    await _stored(sidecar, len(sent))
    return sent


async def _stored(sidecar: Sidecar, rows: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while sidecar.store.counts().rows < rows:
        assert loop.time() < deadline, f"the store holds {sidecar.store.counts().rows} of {rows} predictions"
        await asyncio.sleep(0.05)


async def post(sidecar: Sidecar, body: Any, headers: list[tuple[str, str]] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    response = await raw_request(
        sidecar.admin_port, "POST", "/api/v1/labels", AUTH if headers is None else headers, data
    )
    return response.status, orjson.loads(response.body) if response.body else None


async def performance(sidecar: Sidecar, labelled: int) -> dict[str, Any]:
    """/api/v1/performance once the evaluator has seen ``labelled`` joined labels."""
    return await performance_when(
        sidecar, lambda body: bool(body["variants"]) and body["variants"][0]["labelled"] >= labelled
    )


async def performance_when(sidecar: Sidecar, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """/api/v1/performance once ``ready`` holds for it: the body is the snapshot of the last evaluation."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        response = await raw_request(sidecar.admin_port, "GET", "/api/v1/performance")
        body: dict[str, Any] = orjson.loads(response.body)
        if ready(body):
            return body
        assert loop.time() < deadline, body
        await asyncio.sleep(0.05)


def truth(x: float, rng: random.Random) -> int:
    """A ground truth the model gets mostly right: calibrated, so P(y=1) = sigmoid(x)."""
    return int(rng.random() < _p(x))


async def test_labels_join_out_of_order_with_duplicates_and_unknowns(tmp_path: Path) -> None:
    async with labelled_sidecar(tmp_path) as sidecar:
        sent = await predict(sidecar, 500)
        assert len(sent) == 5_000
        rng = random.Random(7)
        keys = sorted(sent)
        chosen = rng.sample(keys, 3_000)  # 60%, in random order
        labels = {key: truth(sent[key], rng) for key in chosen}
        items = [{"request_id": rid, "row": row, "label": labels[rid, row]} for rid, row in chosen]
        duplicates = rng.sample(items, 100)
        unknown = [{"request_id": f"nobody-{i}", "row": 0, "label": 1} for i in range(50)]
        stream = items + duplicates + unknown
        counts = {"joined": 0, "duplicate": 0, "unmatched": 0, "invalid": 0}
        for start in range(0, len(stream), 500):
            status, body = await post(sidecar, stream[start : start + 500])
            assert status == 200, body
            for kind in counts:
                counts[kind] += body[kind]
            assert [item["outcome"] for item in body["items"]].count("joined") == body["joined"]
        assert counts == {"joined": 3_000, "duplicate": 100, "unmatched": 50, "invalid": 0}

        # The first snapshot after the last post: one taken between the posts already has 3,000
        # labelled (the last post holds only duplicates and unknowns) but not yet every outcome.
        report = await performance_when(
            sidecar,
            lambda body: (
                bool(body["variants"]) and body["variants"][0]["labelled"] >= 3_000 and body["labels"] == counts
            ),
        )
        y_true = [labels[key] for key in chosen]
        y_score = [_p(sent[key]) for key in chosen]
        y_pred = [int(score > 0.5) for score in y_score]
        expected = {
            "accuracy": skm.accuracy_score(y_true, y_pred),
            "precision": skm.precision_score(y_true, y_pred),
            "recall": skm.recall_score(y_true, y_pred),
            "f1": skm.f1_score(y_true, y_pred),
            "auc_roc": skm.roc_auc_score(y_true, y_score),
            "log_loss": skm.log_loss(y_true, [[1 - s, s] for s in y_score]),
        }
        (variant,) = report["variants"]
        assert variant["variant"] == "primary" and variant["labelled"] == 3_000
        for name, value in expected.items():
            assert variant["metrics"][name]["status"] == "ok"
            assert variant["metrics"][name]["samples"] == 3_000
            assert math.isclose(variant["metrics"][name]["value"], value, rel_tol=0, abs_tol=1e-9), name
        # Estimated accuracy over every prediction: the mean top probability of all 5,000.
        estimate = sum(max(_p(x), 1 - _p(x)) for x in sent.values()) / len(sent)
        assert math.isclose(variant["metrics"]["estimated_accuracy"]["value"], estimate, abs_tol=1e-9)
        assert variant["metrics"]["estimated_accuracy"]["samples"] == 5_000
        assert report["label_coverage"] == {"predictions": 5_000, "labelled": 3_000, "share": 0.6}
        assert report["labels"] == counts

        metrics = await scrape(sidecar.admin_port)
        for outcome, n in counts.items():
            assert metrics[f'mlsidecar_labels_total{{model="{MODEL}",outcome="{outcome}"}}'] == n
        key = f'mlsidecar_model_performance{{metric="accuracy",model="{MODEL}",variant="primary"}}'
        assert math.isclose(metrics[key], expected["accuracy"], abs_tol=1e-9)
        assert metrics[f'mlsidecar_label_delay_seconds_count{{model="{MODEL}"}}'] == 3_000
        # The JSON histogram is the Prometheus one: cumulative, "+Inf" the count, the same count per bound.
        delay = report["label_delay_seconds"]
        assert delay["count"] == delay["buckets"]["+Inf"] == 3_000
        assert list(delay["buckets"].values()) == sorted(delay["buckets"].values())
        for key, n in delay["buckets"].items():
            le = key if key == "+Inf" else f"{float(key):g}"
            assert metrics[f'mlsidecar_label_delay_seconds_bucket{{le="{le}",model="{MODEL}"}}'] == n, key
        assert metrics[f'mlsidecar_label_coverage{{model="{MODEL}"}}'] == 0.6
        assert metrics[f'mlsidecar_prediction_store_rows{{model="{MODEL}"}}'] == 5_000


async def test_too_few_labels_report_insufficient_never_a_value(tmp_path: Path) -> None:
    async with labelled_sidecar(tmp_path) as sidecar:
        sent = await predict(sidecar, 3)
        items = [{"request_id": rid, "row": row, "label": 1} for rid, row in sent]
        status, body = await post(sidecar, items)
        assert status == 200 and body["joined"] == 30
        report = await performance(sidecar, 30)
        accuracy = report["variants"][0]["metrics"]["accuracy"]
        assert accuracy["status"] == "insufficient_labels" and accuracy["value"] is None
        assert accuracy["samples"] == 30
        metrics = await scrape(sidecar.admin_port)
        assert not any(k.startswith("mlsidecar_model_performance{") and 'metric="accuracy"' in k for k in metrics)
        key = f'mlsidecar_model_performance_samples{{metric="accuracy",model="{MODEL}",variant="primary"}}'
        assert metrics[key] == 30


async def test_labels_join_after_a_restart_and_the_window_survives(tmp_path: Path) -> None:
    async with labelled_sidecar(tmp_path) as sidecar:
        sent = await predict(sidecar, 20)
        first = sorted(sent)[:100]
        status, body = await post(sidecar, [{"request_id": r, "row": i, "label": 1} for r, i in first])
        assert status == 200 and body["joined"] == 100
    # A new process on the same state directory: predictions and labels are still there.
    async with labelled_sidecar(tmp_path) as sidecar:
        rest = sorted(sent)[100:]
        status, body = await post(sidecar, [{"request_id": r, "row": i, "label": 0} for r, i in rest])
        assert status == 200 and body["joined"] == 100, body
        status, body = await post(sidecar, [{"request_id": r, "row": i, "label": 0} for r, i in first[:5]])
        assert body["duplicate"] == 5  # idempotent across the restart
        report = await performance(sidecar, 200)
        assert report["loaded_from_store"] is True
        assert report["label_coverage"]["share"] == 1.0


BAD_REQUESTS: list[tuple[str, bytes, int, str]] = [
    ("malformed JSON", b'{"request_id": "a", "label": ', 400, "not valid JSON"),
    ("a bare string", b'"hello"', 422, "must be a label object"),
    ("an empty list", b"[]", 422, "empty list"),
    ("a list item not an object", b'[{"request_id": "req-0-0", "row": 0, "label": 1}, 5]', 422, "[1]: expected"),
    ("request_id missing", b'[{"row": 0, "label": 1}]', 422, "[0].request_id: required"),
    ("request_id a number", b'[{"request_id": 12, "label": 1}]', 422, "[0].request_id"),
    ("row negative", b'[{"request_id": "req-0-0", "row": -1, "label": 1}]', 422, "[0].row"),
    ("row a boolean", b'[{"request_id": "req-0-0", "row": true, "label": 1}]', 422, "[0].row"),
    ("label missing", b'[{"request_id": "req-0-0", "row": 0}]', 422, "[0].label: required"),
    ("label null", b'[{"request_id": "req-0-0", "row": 0, "label": null}]', 422, "[0].label"),
    ("timestamp naive", b'[{"request_id": "req-0-0", "label": 1, "timestamp": "2026-01-01T00:00:00"}]', 422, "zone"),
    ("unknown field", b'[{"request_id": "req-0-0", "label": 1, "labl": 2}]', 422, "[0].labl: unknown field"),
    ("too many items", orjson.dumps([{"request_id": "x", "label": 1}] * 10_001), 413, "at most 10000"),
]


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD_REQUESTS, ids=[row[0] for row in BAD_REQUESTS])
async def test_bad_requests_are_rejected_whole_and_store_nothing(
    tmp_path: Path, case: str, body: bytes, status: int, message: str
) -> None:
    async with labelled_sidecar(tmp_path, SIDECAR_LABELS_MAX_BYTES="1048576") as sidecar:
        sent = await predict(sidecar, 1)
        got, answer = await post(sidecar, body)
        assert got == status, answer
        assert message in answer["error"] + " ".join(answer.get("problems", [])), answer
        # Nothing of it was stored: the first row of the request still takes a label.
        rid, row = min(sent)
        got, answer = await post(sidecar, [{"request_id": rid, "row": row, "label": 1}])
        assert got == 200 and answer["joined"] == 1, answer
        assert sidecar.labels.outcomes == {"joined": 1, "unmatched": 0, "duplicate": 0, "invalid": 0}


async def test_oversized_body_is_413_and_auth_is_checked(tmp_path: Path) -> None:
    async with labelled_sidecar(tmp_path, SIDECAR_LABELS_MAX_BYTES="2048") as sidecar:
        big = orjson.dumps([{"request_id": f"r{i}", "label": 1} for i in range(200)])
        status, body = await post(sidecar, big)
        assert status == 413 and "SIDECAR_LABELS_MAX_BYTES" in body["error"]
        status, body = await post(sidecar, [{"request_id": "a", "label": 1}], headers=[])
        assert status == 401
        status, body = await post(sidecar, [{"request_id": "a", "label": 1}], [("authorization", "Bearer wrong")])
        assert status == 403
        status, body = await post(sidecar, [{"request_id": "a", "label": 1}], [("authorization", f"Basic {TOKEN}")])
        assert status == 403
        assert sidecar.labels.outcomes["unmatched"] == 0


async def test_without_a_token_the_endpoint_refuses(tmp_path: Path) -> None:
    async with labelled_sidecar(tmp_path, SIDECAR_ADMIN_TOKEN="") as sidecar:
        status, body = await post(sidecar, [{"request_id": "a", "label": 1}])
        assert status == 403 and "SIDECAR_ADMIN_TOKEN is not set" in body["error"]


async def test_per_item_invalid_labels_do_not_hold_back_the_batch(tmp_path: Path) -> None:
    async with labelled_sidecar(tmp_path, SIDECAR_CLASSES="0,1") as sidecar:
        sent = await predict(sidecar, 1)
        (a, b, c) = sorted(sent)[:3]
        items = [
            {"request_id": a[0], "row": a[1], "label": 1},
            {"request_id": b[0], "row": b[1], "label": "cat"},  # not one of SIDECAR_CLASSES
            {"request_id": c[0], "label": 0},  # no row, and the request had ten
        ]
        status, body = await post(sidecar, items)
        assert status == 200
        outcomes = [(item["outcome"], item.get("reason", "")) for item in body["items"]]
        assert outcomes[0] == ("joined", "")
        assert outcomes[1][0] == "invalid" and "configured classes" in outcomes[1][1]
        assert outcomes[2][0] == "invalid" and "row required" in outcomes[2][1]
        assert sidecar.labels.outcomes == {"joined": 1, "unmatched": 0, "duplicate": 0, "invalid": 2}


async def test_retraining_triggers_reach_a_real_webhook(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    async def webhook(scope: Scope, receive: Any, send: Any) -> None:
        received.append(
            {"path": scope["path"], "query": scope["query_string"], **orjson.loads(await read_body(receive))}
        )
        arrived.set()
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async with run_server(webhook) as hook_port:
        env = {
            "SIDECAR_RETRAIN_WEBHOOK_URL": f"http://127.0.0.1:{hook_port}/hooks/retrain?team=ml",
            "SIDECAR_RETRAIN_MIN_NEW_LABELS": "150",
            "SIDECAR_RETRAIN_ON_DRIFT": "false",
            "SIDECAR_BASELINE_ACCURACY": "0.99",
            "SIDECAR_RETRAIN_MAX_DROP": "0.05",
            "SIDECAR_MODEL_TRAINED_AT": "2026-01-01T00:00:00Z",
        }
        async with labelled_sidecar(tmp_path, **env) as sidecar:
            sent = await predict(sidecar, 20)
            rng = random.Random(3)
            items = [{"request_id": r, "row": i, "label": truth(x, rng)} for (r, i), x in sorted(sent.items())]
            status, body = await post(sidecar, items)
            assert status == 200 and body["joined"] == 200
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while {hook["reason"] for hook in received} != {"new_data", "performance"}:
                assert loop.time() < deadline, received
                await asyncio.sleep(0.05)
            by_reason = {hook["reason"]: hook for hook in received}
            assert all(hook["path"] == "/hooks/retrain" and hook["query"] == b"team=ml" for hook in received)
            assert all(hook["model"] == MODEL and hook["timestamp"].endswith("Z") for hook in received)
            assert by_reason["new_data"]["context"]["new_labels"] == 200
            drop = by_reason["performance"]["context"]
            assert drop["metric"] == "accuracy" and drop["baseline"] == 0.99 and drop["drop"] > 0.05
            sent_keys = [
                f'mlsidecar_retrain_triggers_total{{model="{MODEL}",outcome="sent",reason="{reason}"}}'
                for reason in ("new_data", "performance")
            ]
            # The webhook has the POSTs; each delivery is counted once its answer is read.
            metrics = await scrape(sidecar.admin_port)
            while any(metrics[key] < 1 for key in sent_keys):
                assert loop.time() < deadline
                await asyncio.sleep(0.05)
                metrics = await scrape(sidecar.admin_port)
            for key in sent_keys:
                assert metrics[key] == 1
            assert metrics[f'mlsidecar_model_performance_baseline{{metric="accuracy",model="{MODEL}"}}'] == 0.99
            assert metrics[f'mlsidecar_model_age_seconds{{model="{MODEL}"}}'] > 86_400
            # The delivery ended after the evaluation that fired it: a later snapshot shows how it ended.
            report = await performance_when(sidecar, lambda body: _trigger_outcome(body) not in (None, "pending"))
            assert report["retraining"]["last_trigger"]["outcome"] == "sent"
            assert report["retraining"]["baseline"] == {"accuracy": 0.99}


def _trigger_outcome(body: dict[str, Any]) -> str | None:
    last = body["retraining"]["last_trigger"]
    return None if last is None else str(last["outcome"])
