"""Several sidecar replicas on one PostgreSQL store: labels join anywhere, the fleet's figures are computed once.

Real processes (``ml-sidecar serve``, process mode), a real model server, the
session's real PostgreSQL (``tests/postgres.py``), each test on a database of
its own. The expected figures are scikit-learn's, on the ground truth the test
drew and every labelled row of the fleet (both replicas' predictions), weighted
as the sidecar weights them: 1/p, which is 1 at the default sample rate of 1.
The stored rows are counted straight from the ``predictions`` table.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pytest
from sklearn import metrics as skm  # type: ignore[import-untyped]

from tests.http import raw_request
from tests.integration.replicas import (
    MODEL,
    PREDICT,
    Replica,
    Scorer,
    fleet_families,
    leader_and_follower,
    post_labels,
    predict_on_both,
    probability,
    regression_value,
    run_replicas,
    stored,
)
from tests.postgres import Postgres
from tests.servers import run_server
from tests.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

INTERVAL = 0.5  # SIDECAR_EVAL_INTERVAL_SECONDS: the evaluation, and how often the leader lock is tried
TAKEOVER_SLACK = 0.25  # seconds beyond two intervals for a takeover; see the SIGKILL test
ENV = {"SIDECAR_EVAL_INTERVAL_SECONDS": str(INTERVAL), "SIDECAR_PERF_MIN_LABELS": "20"}
CLASSIFICATION = {**ENV, "SIDECAR_POSITIVE_LABEL": "1"}
REGRESSION = {**ENV, "SIDECAR_TASK": "regression"}
ROWS = 5  # instances per request
BATCH = 100  # label items per POST
# The store reconnects with a backoff of 0.5 s doubling: a few seconds after PostgreSQL is back.
RECOVERY_SECONDS = 15.0

Key = tuple[str, int]  # (request id, row)


async def performance_when(replica: Replica, labelled: int, timeout: float = 20.0) -> dict[str, Any]:
    """``/api/v1/performance`` once its leader's snapshot holds ``labelled`` labelled rows of the fleet."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        body = await replica.performance()
        if body["leader"] and body["variants"] and body["variants"][0]["labelled"] == labelled:
            return body
        assert loop.time() < deadline, body
        await asyncio.sleep(0.05)


async def post_all(replica: Replica, items: list[dict[str, Any]]) -> dict[str, int]:
    """Post ``items`` in batches of ``BATCH``; the outcome counts of every answer, summed."""
    counts = dict.fromkeys(("joined", "duplicate", "unmatched", "invalid"), 0)
    for start in range(0, len(items), BATCH):
        status, answer, _ = await post_labels(replica, items[start : start + BATCH])
        assert status == 200, answer
        for kind in counts:
            counts[kind] += answer[kind]
    return counts


def add(*counts: dict[str, int]) -> dict[str, int]:
    return {kind: sum(c[kind] for c in counts) for kind in counts[0]}


def classification_truth(sent: dict[Key, float], keys: list[Key], seed: int) -> dict[Key, int]:
    """Labels the model gets mostly right: P(y = 1) = p(x), drawn with ``seed``."""
    rng = random.Random(seed)
    return {key: int(rng.random() < probability(sent[key])) for key in keys}


def expected_classification(sent: dict[Key, float], labels: dict[Key, int]) -> dict[str, float]:
    keys = sorted(labels)
    y_true = [labels[key] for key in keys]
    y_score = [probability(sent[key]) for key in keys]
    y_pred = [int(score > 0.5) for score in y_score]
    weight = [1.0] * len(keys)  # 1/p at sample rate 1
    return {
        "accuracy": skm.accuracy_score(y_true, y_pred, sample_weight=weight),
        "auc_roc": skm.roc_auc_score(y_true, y_score, sample_weight=weight),
    }


def assert_figures(body: dict[str, Any], expected: dict[str, float], labelled: int) -> None:
    (variant,) = body["variants"]
    assert variant["labelled"] == labelled
    for name, value in expected.items():
        metric = variant["metrics"][name]
        assert metric["status"] == "ok" and metric["samples"] == labelled, (name, metric)
        assert math.isclose(metric["value"], value, rel_tol=0, abs_tol=1e-9), (name, metric["value"], value)


async def assert_one_exporter(leader: Replica, follower: Replica) -> dict[str, float]:
    """The leader exports the fleet's families and says so; the follower exports none. The leader's samples."""
    ours, theirs = await asyncio.gather(leader.metrics(), follower.metrics())
    assert ours[f'mlsidecar_store_leader{{model="{MODEL}"}}'] == 1
    assert theirs[f'mlsidecar_store_leader{{model="{MODEL}"}}'] == 0
    assert fleet_families(theirs) == {}
    assert {key.split("{")[0] for key in fleet_families(ours)} >= {
        "mlsidecar_model_performance",
        "mlsidecar_model_performance_samples",
        "mlsidecar_label_coverage",
        "mlsidecar_prediction_store_rows",
    }
    body = await follower.performance()
    assert body["leader"] is False
    assert (body["variants"], body["estimated_accuracy"], body["label_coverage"]) == ([], {}, None)
    for replica, leads in ((leader, True), (follower, False)):
        await ready_store(replica, {"backend": "postgresql", "state": "ok", "leader": leads})
    return ours


async def ready_store(replica: Replica, expected: dict[str, Any], timeout: float = 5.0) -> None:
    """Wait until ``/readyz`` (200) shows the store as ``expected``: the monitoring process reports it every second."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status, ready = await replica.readyz()
        assert status == 200, ready
        if ready["store"] == expected:
            return
        assert loop.time() < deadline, ready
        await asyncio.sleep(0.05)


async def test_two_replicas_join_every_label_once_and_the_leader_alone_exports_the_fleet(postgres: Postgres) -> None:
    url = postgres.database()
    async with (
        run_server(Scorer("classification")) as port,
        run_replicas(f"http://127.0.0.1:{port}", url, 2, CLASSIFICATION) as fleet,
    ):
        a, b = fleet
        sent = await predict_on_both(fleet, url, (120, 80), rows=ROWS, seeds=(1, 2))
        assert len(sent) == 1_000

        # 80% of the fleet's rows get a label, whichever replica served them: half of those are posted
        # to A alone, a quarter to B alone, and a quarter to both at once, batch for batch, so the two
        # replicas race to join them.
        rng = random.Random(3)
        chosen = rng.sample(sorted(sent), 800)
        labels = classification_truth(sent, chosen, seed=4)
        items: list[dict[str, Any]] = [
            {"request_id": rid, "row": row, "label": labels[rid, row]} for rid, row in chosen
        ]
        only_a, only_b, both = items[:400], items[400:600], items[600:]
        for part in (only_a, only_b, both):
            assert {item["request_id"][0] for item in part} == {"a", "b"}  # both replicas' predictions
        counts = [await post_all(a, only_a), await post_all(b, only_b)]
        for start in range(0, len(both), BATCH):
            batch = both[start : start + BATCH]
            answers = await asyncio.gather(post_labels(a, batch), post_labels(b, batch))
            for status, answer, _ in answers:
                assert status == 200, answer
                counts.append({kind: answer[kind] for kind in counts[0]})
            # Each item of the raced batch joined on exactly one replica, the other saw a duplicate.
            for x, y in zip(answers[0][1]["items"], answers[1][1]["items"], strict=True):
                assert sorted((x["outcome"], y["outcome"])) == ["duplicate", "joined"], (x, y)
        assert add(*counts) == {"joined": 800, "duplicate": 200, "unmatched": 0, "invalid": 0}

        # In the table: each label once, as posted, on the prediction of whichever replica served it.
        rows = await asyncio.to_thread(
            stored, url, "SELECT request_id, row_index, label, weight FROM predictions WHERE label IS NOT NULL"
        )
        assert {(rid, row): int(label) for rid, row, label, _ in rows} == labels
        assert {weight for *_, weight in rows} == {1.0}

        leader, follower = await leader_and_follower(fleet)
        body = await performance_when(leader, 800)
        expected = expected_classification(sent, labels)
        assert_figures(body, expected, 800)
        assert body["label_coverage"] == {"predictions": 1_000, "labelled": 800, "share": 0.8}
        # The estimate over every prediction of the fleet, labelled or not: the mean top probability.
        estimate = sum(max(probability(x), 1 - probability(x)) for x in sent.values()) / len(sent)
        assert math.isclose(body["estimated_accuracy"]["primary"]["value"], estimate, rel_tol=0, abs_tol=1e-9)

        ours = await assert_one_exporter(leader, follower)
        for name, value in expected.items():
            key = f'mlsidecar_model_performance{{metric="{name}",model="{MODEL}",variant="primary"}}'
            assert math.isclose(ours[key], value, rel_tol=0, abs_tol=1e-9), name
        assert ours[f'mlsidecar_label_coverage{{model="{MODEL}"}}'] == 0.8
        # The label counters are each replica's own, and add up to the fleet's.
        joined = [(await r.metrics())[f'mlsidecar_labels_total{{model="{MODEL}",outcome="joined"}}'] for r in fleet]
        assert sum(joined) == 800


async def test_regression_figures_of_the_fleet_equal_scikit_learn(postgres: Postgres) -> None:
    url = postgres.database()
    async with (
        run_server(Scorer("regression")) as port,
        run_replicas(f"http://127.0.0.1:{port}", url, 2, REGRESSION) as fleet,
    ):
        a, b = fleet
        sent = await predict_on_both(fleet, url, (40, 40), rows=ROWS, seeds=(5, 6))
        assert all(not 0 <= regression_value(x) <= 1 for x in sent.values())  # else read as a probability
        rng = random.Random(7)
        chosen = rng.sample(sorted(sent), 300)
        # The truth around the prediction, with noise, so the errors are neither zero nor constant.
        labels = {key: round(regression_value(sent[key]) + rng.gauss(0.0, 5.0), 4) for key in chosen}
        items: list[dict[str, Any]] = [
            {"request_id": rid, "row": row, "label": labels[rid, row]} for rid, row in chosen
        ]
        # The fleet's labels, whichever replica served them: a third to A, a third to B, a third to both.
        counts = add(
            await post_all(a, items[:100]),
            await post_all(b, items[100:200]),
            *await asyncio.gather(post_all(a, items[200:]), post_all(b, items[200:])),
        )
        assert counts == {"joined": 300, "duplicate": 100, "unmatched": 0, "invalid": 0}

        leader, follower = await leader_and_follower(fleet)
        body = await performance_when(leader, 300)
        keys = sorted(labels)
        y_true = [labels[key] for key in keys]
        y_pred = [regression_value(sent[key]) for key in keys]
        weight = [1.0] * len(keys)
        expected = {
            "rmse": math.sqrt(skm.mean_squared_error(y_true, y_pred, sample_weight=weight)),
            "mae": skm.mean_absolute_error(y_true, y_pred, sample_weight=weight),
        }
        assert_figures(body, expected, 300)
        ours = await assert_one_exporter(leader, follower)
        key = f'mlsidecar_model_performance{{metric="rmse",model="{MODEL}",variant="primary"}}'
        assert math.isclose(ours[key], expected["rmse"], rel_tol=0, abs_tol=1e-9)


async def test_the_other_replica_takes_over_within_two_intervals_when_the_leader_is_killed(postgres: Postgres) -> None:
    url = postgres.database()
    async with (
        run_server(Scorer("classification")) as port,
        run_replicas(f"http://127.0.0.1:{port}", url, 2, CLASSIFICATION) as fleet,
    ):
        a, b = fleet
        sent = await predict_on_both(fleet, url, (60, 60), rows=ROWS, seeds=(8, 9))
        rng = random.Random(10)
        keys = sorted(sent)
        rng.shuffle(keys)
        labels = classification_truth(sent, keys, seed=11)
        items: list[dict[str, Any]] = [{"request_id": rid, "row": row, "label": labels[rid, row]} for rid, row in keys]
        first, later = items[:400], items[400:]
        assert add(await post_all(a, first[:200]), await post_all(b, first[200:]))["joined"] == 400
        leader, survivor = await leader_and_follower(fleet)
        await performance_when(leader, 400)
        count = "SELECT count(*), count(label) FROM predictions"
        before = await asyncio.to_thread(stored, url, count)
        assert before == [(600, 400)]

        _, ready = await leader.readyz()
        killed = time.time()
        # The whole tree, as a node failure would: the monitoring process holds the lock's session.
        assert ready["monitoring"]["pid"] in await leader.kill()
        # The lock goes with the dead leader's session; the survivor takes it at its next round of the
        # lock (at most one interval later) and publishes it at its next evaluation (at most one more).
        # TAKEOVER_SLACK covers those rounds' own durations and the scheduling of a monitoring process
        # that runs at SCHED_IDLE on a busy machine. Timed by the snapshot's own evaluated_at, so the
        # test's polling adds nothing to it.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not (body := await survivor.performance())["leader"]:
            assert loop.time() < deadline, "no replica took over"
            await asyncio.sleep(0.01)
        took_over = datetime.fromisoformat(body["evaluated_at"]).timestamp() - killed
        assert took_over <= 2 * INTERVAL + TAKEOVER_SLACK, f"the survivor took over {took_over:.3f} s after the kill"
        assert await survivor.leads()  # mlsidecar_store_leader reads the same snapshot
        # Nothing stored was lost with the leader.
        assert await asyncio.to_thread(stored, url, count) == before

        # The rest of the labels, for both replicas' predictions, all to the survivor: they join
        # against the dead replica's stored predictions too, and the new leader scores the whole fleet.
        assert await post_all(survivor, later) == {"joined": 200, "duplicate": 0, "unmatched": 0, "invalid": 0}
        body = await performance_when(survivor, 600)
        assert_figures(body, expected_classification(sent, labels), 600)
        assert body["label_coverage"] == {"predictions": 600, "labelled": 600, "share": 1.0}
        await ready_store(survivor, {"backend": "postgresql", "state": "ok", "leader": True})
        assert await asyncio.to_thread(stored, url, count) == [(600, 600)]


@dataclass
class Traffic:
    """Single-row requests through the proxy, each also sent straight to the model server to compare."""

    proxy_port: int
    upstream_port: int
    sent: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    # "before", then "stopping" (PostgreSQL is going), "outage" (the sidecar says the store is degraded),
    # "after" (PostgreSQL is starting again), and "stopped" to end the run.
    phase: str = "before"
    by_phase: dict[str, list[str]] = field(
        default_factory=lambda: {p: [] for p in ("before", "stopping", "outage", "after")}
    )

    async def run(self) -> None:
        """One request every ``PACE`` seconds until ``phase`` is "stopped": never cut off mid-request, so ``sent``
        is exact."""
        for i in itertools.count():
            if self.phase == "stopped":
                return
            request_id, phase = f"t-{i}", self.phase
            body = orjson.dumps({"instances": [{"x": round(math.sin(i) * 4, 4)}]})
            headers = [("x-request-id", request_id), ("content-type", "application/json")]
            direct = await raw_request(self.upstream_port, "POST", PREDICT, headers, body)
            proxied = await raw_request(self.proxy_port, "POST", PREDICT, headers, body)
            self.sent.append(request_id)
            self.by_phase[phase].append(request_id)
            if (proxied.status, proxied.body, proxied.values("content-type")) != (
                direct.status,
                direct.body,
                direct.values("content-type"),
            ):
                self.differences.append(f"{request_id} ({phase}): {proxied} != {direct}")
            await asyncio.sleep(PACE)


@dataclass
class Readiness:
    """``/readyz`` polled every 50 ms: every status seen, and the store's state in each answer."""

    replica: Replica
    statuses: set[int] = field(default_factory=set)
    store: dict[str, Any] = field(default_factory=dict)

    async def run(self) -> None:
        while True:
            status, body = await self.replica.readyz()
            self.statuses.add(status)
            self.store = body["store"]
            await asyncio.sleep(0.05)

    async def state(self, expected: str, timeout: float = 10.0) -> None:
        await wait_until(lambda: self.store.get("state") == expected, timeout=timeout)


PACE = 0.01  # seconds between the traffic's requests: at most about 60 a second, with the two calls each
# SIDECAR_STORE_BUFFER_MAX_BYTES: a store row is estimated at about 440 bytes, so the buffer takes some
# 148 rows, 2.5 s of the traffic at most: more than /readyz needs to show the store degraded (its state
# comes from the monitoring process every second), less than the outage lasts, so it overflows then.
BUFFER_BYTES = 65_536


async def test_postgres_stopping_mid_traffic_changes_no_response_and_the_store_recovers(postgres: Postgres) -> None:
    url = postgres.database()
    env = {**CLASSIFICATION, "SIDECAR_STORE_BUFFER_MAX_BYTES": str(BUFFER_BYTES)}
    async with (
        run_server(Scorer("classification")) as port,
        run_replicas(f"http://127.0.0.1:{port}", url, 1, env) as (replica,),
    ):
        traffic, readiness = Traffic(replica.proxy_port, port), Readiness(replica)
        dropped = f'mlsidecar_prediction_store_dropped_total{{model="{MODEL}",reason="buffer_full"}}'
        tasks = [asyncio.create_task(traffic.run()), asyncio.create_task(readiness.run())]
        try:
            await readiness.state("ok")
            await wait_until(lambda: len(traffic.sent) >= 50)
            # Labels for predictions already in the table, to be posted while the database is away.
            keys = await asyncio.to_thread(stored, url, "SELECT request_id FROM predictions ORDER BY request_id")
            refused = [{"request_id": rid, "row": 0, "label": 1} for (rid,) in keys[:20]]
            assert len(refused) == 20

            traffic.phase = "stopping"
            await asyncio.to_thread(postgres.stop)
            try:
                await readiness.state("degraded")
                # From now on, no prediction can be written before PostgreSQL is back.
                traffic.phase = "outage"
                loop = asyncio.get_running_loop()
                started = loop.time()
                status, answer, response = await post_labels(replica, refused)
                assert status == 503 and response.values("retry-after") == ["5"], response
                assert "nothing was stored" in answer["error"]
                assert loop.time() - started < 5.0
                # Until the buffer overflows, and a little more: those predictions are dropped and counted.
                deadline = loop.time() + 20
                while (await replica.metrics())[dropped] < 10:
                    assert loop.time() < deadline, "the buffer never overflowed"
                    await asyncio.sleep(0.1)
            finally:
                traffic.phase = "after"
                await asyncio.to_thread(postgres.start)
            await readiness.state("ok", timeout=RECOVERY_SECONDS)
            sent_after = len(traffic.by_phase["after"])
            await wait_until(lambda: len(traffic.by_phase["after"]) >= sent_after + 20)
        finally:
            traffic.phase = "stopped"
            await asyncio.wait_for(tasks[0], timeout=10)
            tasks[1].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        assert traffic.differences == []
        assert readiness.statuses == {200}, readiness.statuses  # the model served: ready throughout
        assert len(traffic.by_phase["outage"]) >= 20
        # Every row sent is in the table or counted as dropped, once the last batch is written.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while True:
            metrics = await replica.metrics()
            dropped_rows = metrics[dropped]
            (held,) = await asyncio.to_thread(stored, url, "SELECT count(*) FROM predictions")
            if held[0] + dropped_rows == len(traffic.sent):
                break
            assert loop.time() < deadline, (held, dropped_rows, len(traffic.sent))
            await asyncio.sleep(0.05)
        assert dropped_rows > 0
        # No exchange was lost before the store, so the table and the store's drops account for every row.
        assert sum(v for k, v in metrics.items() if k.startswith("mlsidecar_capture_dropped_total{")) == 0
        outage = traffic.by_phase["outage"]
        written = await asyncio.to_thread(
            stored, url, "SELECT count(*) FROM predictions WHERE request_id = ANY(%s)", (outage,)
        )
        # What the buffer held through the outage arrived; the rest of the outage's rows were dropped.
        assert 0 < written[0][0] < len(outage), (written, len(outage), {k: len(v) for k, v in traffic.by_phase.items()})
        # Nothing of the refused batch was stored: it joins whole now that the database is back.
        labelled = await asyncio.to_thread(stored, url, "SELECT count(label) FROM predictions")
        assert labelled == [(0,)]
        status, answer, _ = await post_labels(replica, refused)
        assert status == 200 and answer["joined"] == 20, answer
