"""Issue 17's experiments end to end, through real ``ml-sidecar serve`` processes in the default process mode.

Real model servers on 127.0.0.1 that name themselves in their answers
(:class:`~tests.integration.experiment_servers.Model`), so a client sees which
arm served it; real sidecar processes, each a serving process and its
monitoring process, on a SQLite store of their own or, for the replicas, on
the session's PostgreSQL (``tests/postgres.py``). What each test expects is
computed here from what it sent and posted: the arms by the keyed hash
(:class:`~sidecar.experiments.assignment.Assigner`), the statistics by
statsmodels, never from what a sidecar answers.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from time import perf_counter
from typing import Any

import pytest
from statsmodels.stats.multitest import multipletests  # type: ignore[import-untyped]
from statsmodels.stats.proportion import proportions_ztest  # type: ignore[import-untyped]

from sidecar.experiments.assignment import Assigner
from sidecar.experiments.shadow import OUTCOMES
from sidecar.records import parse_rfc3339
from tests.http import RawResponse
from tests.integration.experiment_servers import (
    Behaviour,
    Model,
    closed_port,
    experiments,
    post_json,
    predict,
    series,
    served_by,
    sidecar_process,
    split,
    write_definition,
)
from tests.integration.replicas import MODEL, Replica, post_labels, run_replicas, stored, wait_for_rows
from tests.postgres import Postgres
from tests.servers import run_server
from tests.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

EXPERIMENT = "ranker-v2"  # split's default name, and so the salt
SHADOW = "shadow-v2"
USERS = [f"u-{i}" for i in range(200)]
# SIDECAR_EXPERIMENT_INTERVAL_SECONDS: the analysis is re-run every second.
INTERVAL = {"SIDECAR_EXPERIMENT_INTERVAL_SECONDS": "1"}
DECISIONS = ("invalid", "revert", "roll_out", "no_difference", "keep_running")


def units_total(variant: str) -> str:
    return series("mlsidecar_experiment_units_total", experiment=EXPERIMENT, model=MODEL, variant=variant)


def requests_total(variant: str, code: str = "200") -> str:
    return series("mlsidecar_requests_total", code=code, model=MODEL, variant=variant)


def variants_of(samples: Mapping[str, float], family: str) -> set[str]:
    """The ``variant`` label values ``family`` has samples for."""
    prefix = family + "{"
    return {key.split('variant="', 1)[1].split('"', 1)[0] for key in samples if key.startswith(prefix)}


async def store_rows(sidecar: Replica, rows: int, timeout: float = 20.0) -> None:
    """Wait until the sidecar's SQLite store holds ``rows`` predictions (``mlsidecar_prediction_store_rows``)."""
    key = series("mlsidecar_prediction_store_rows", model=MODEL)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (held := (await sidecar.metrics()).get(key)) != rows:
        assert loop.time() < deadline, f"the store holds {held} of {rows} predictions"
        await asyncio.sleep(0.05)


async def analysis_after(
    sidecar: Replica, moment: float, routed: Sequence[Mapping[str, int]], timeout: float = 30.0
) -> dict[str, Any]:
    """The experiment's entry once an analysis has read the store wholly after ``moment`` (Unix seconds) and
    shows the router's counts ``routed``, per arm.

    An evaluation computed after ``moment`` may have read the store before it; the one after that began
    once it ended, so it read everything done before ``moment``. The router's counts are the serving
    process's, which its monitoring process mirrors every second: they may reach an analysis later.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    fresh = 0
    while True:
        entry = await experiments(sidecar)
        evaluated = entry["evaluated_at"]
        if evaluated is not None and parse_rfc3339(evaluated) > moment:
            fresh += 1
            moment = parse_rfc3339(evaluated)
            if fresh >= 2 and [arm["routed"] for arm in entry["analysis"]["arms"]] == list(routed):
                return entry
        assert loop.time() < deadline, entry
        await asyncio.sleep(0.05)


# -- 1. Replicas ---------------------------------------------------------------------------------------------------


async def test_two_replicas_on_one_store_put_every_user_in_the_same_arm(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.database()
    weights = {"control": 0.3, "treatment": 0.7}
    anonymous = 10  # requests without x-user-id per replica: each arm chosen by a coin
    models = {"control": Model("control"), "treatment": Model("treatment")}
    async with (
        run_server(models["control"]) as control,
        run_server(models["treatment"]) as treatment,
    ):
        path = write_definition(tmp_path, split(weights, upstreams={"treatment": treatment}))
        env = {"SIDECAR_EXPERIMENT_PATH": str(path), **INTERVAL}
        async with run_replicas(f"http://127.0.0.1:{control}", url, 2, env) as fleet:
            # Every user twice through each replica, and a few requests without the key.
            plan: list[tuple[Replica, str | None]] = [(r, user) for _ in range(2) for r in fleet for user in USERS]
            plan += [(r, None) for r in fleet for _ in range(anonymous)]
            gate = asyncio.Semaphore(8)

            async def send(replica: Replica, user: str | None) -> tuple[str, str | None, str]:
                async with gate:
                    response = await predict(replica, 0.5, user=user)
                return replica.name, user, served_by(response)

            answers = await asyncio.gather(*(send(replica, user) for replica, user in plan))

            # Each user always got the same model, on both replicas: the arm its keyed hash gives.
            assigner = Assigner(list(weights.items()), EXPERIMENT)
            seen: dict[str, set[tuple[str, str]]] = {}
            for replica_name, user, arm in answers:
                if user is not None:
                    seen.setdefault(user, set()).add((replica_name, arm))
            assert seen == {user: {(r.name, assigner.assign(user).variant) for r in fleet} for user in USERS}
            users_in = Counter(assigner.assign(user).variant for user in USERS)
            assert users_in["control"] > 0 and users_in["treatment"] > 0
            # Each model server saw exactly its arm's requests.
            served = Counter(arm for *_, arm in answers)
            assert {name: len(model.seen) for name, model in models.items()} == dict(served)
            assert sum(served.values()) == len(plan)

            # Each replica counts its own routing; summed over the fleet, the requests sent to each arm.
            scrapes = {r.name: await r.metrics() for r in fleet}
            for replica in fleet:
                samples = scrapes[replica.name]
                mine = Counter(arm for name, _, arm in answers if name == replica.name)
                for arm in weights:
                    assert samples[units_total(arm)] == mine[arm], (replica.name, arm)
                    assert samples[requests_total(arm)] == mine[arm], (replica.name, arm)
                # The request metrics' variant is the arm: no "primary" beside them.
                assert variants_of(samples, "mlsidecar_requests_total") == set(weights)
            for arm in weights:
                assert sum(scrapes[r.name][units_total(arm)] for r in fleet) == served[arm]

            # The shared store holds each user's predictions in one arm, whichever replica served them.
            await wait_for_rows(url, len(plan))
            rows = await asyncio.to_thread(
                stored, url, "SELECT unit, variant, count(*) FROM predictions GROUP BY unit, variant"
            )
            by_unit = {unit: (variant, n) for unit, variant, n in rows if unit is not None}
            assert by_unit == {user: (assigner.assign(user).variant, 4) for user in USERS}
            coins = Counter(arm for _, user, arm in answers if user is None)
            assert {variant: n for unit, variant, n in rows if unit is None} == dict(coins)

            # Both replicas analyse the fleet's window from the shared store: one start, and the same units
            # captured per arm (each coin-routed request is a unit of its own). The routing beside it is each
            # replica's own; it reaches the analysis through the monitoring process's mirror, a second late.
            captured = [users_in[arm] + coins[arm] for arm in weights]
            expected = []
            for replica in fleet:
                mine = Counter(arm for name, user, arm in answers if name == replica.name and user is not None)
                alone = Counter(arm for name, user, arm in answers if name == replica.name and user is None)
                routed = [{"keyed": mine[arm], "randomised": alone[arm]} for arm in weights]
                expected.append([(arm, n, by) for arm, n, by in zip(weights, captured, routed, strict=True)])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while True:
                entries = await asyncio.gather(*(experiments(r) for r in fleet))
                shown = [
                    None
                    if e["analysis"] is None
                    else [(arm["name"], arm["captured_units"], arm["routed"]) for arm in e["analysis"]["arms"]]
                    for e in entries
                ]
                if shown == expected:
                    break
                assert loop.time() < deadline, (shown, expected)
                await asyncio.sleep(0.1)
            assert entries[0]["started_at"] == entries[1]["started_at"]


# -- 2. The decision -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("treatment_is", "decision"), [("better", "roll_out"), ("worse", "revert")])
async def test_labels_and_outcomes_posted_late_give_the_decision_the_data_implies(
    tmp_path: Path, treatment_is: str, decision: str
) -> None:
    better = treatment_is == "better"
    # The better arm's model is the accurate one and its users convert more.
    models = {"control": Model("control", accurate=not better), "treatment": Model("treatment", accurate=better)}
    metrics = {
        "primary": [{"name": "conversion", "source": "outcome", "kind": "proportion"}],
        "secondary": [{"name": "accuracy", "source": "label"}],
        "guardrails": [{"name": "error_rate", "max_increase": 0.01}],
    }
    async with (
        run_server(models["control"]) as control,
        run_server(models["treatment"]) as treatment,
    ):
        definition = split({"control": 0.5, "treatment": 0.5}, upstreams={"treatment": treatment}, metrics=metrics)
        env = {"SIDECAR_EXPERIMENT_PATH": str(write_definition(tmp_path, definition)), **INTERVAL}
        async with sidecar_process(f"http://127.0.0.1:{control}", env) as sidecar:
            rng = random.Random(17)
            xs = {user: rng.uniform(-1.0, 1.0) for user in USERS}
            arm_of: dict[str, str] = {}
            for user in USERS:
                response = await predict(sidecar, xs[user], user=user, request_id=f"{user}-r")
                arm_of[user] = served_by(response)
            await store_rows(sidecar, len(USERS))
            arms = ("control", "treatment")
            users = Counter(arm_of.values())
            assert users["control"] > 40 and users["treatment"] > 40

            # After the traffic: the labels (the sign of x, but for every tenth user, so no model is perfect)...
            truth = {user: int((xs[user] > 0) != (i % 10 == 0)) for i, user in enumerate(USERS)}
            status, answer, _ = await post_labels(
                sidecar, [{"request_id": f"{user}-r", "label": truth[user]} for user in USERS]
            )
            assert status == 200 and answer["joined"] == len(USERS), answer
            right = Counter(
                arm_of[user] for user in USERS if int(models[arm_of[user]].probability(xs[user]) > 0.5) == truth[user]
            )
            # ...and the conversions, by unit: 6 in 10 of the better arm's users, 2 in 10 of the other's. A 0 is
            # posted for half the others; the rest say nothing, which counts as 0 too.
            converts = "treatment" if better else "control"
            converted = {user: i % 10 < (6 if arm_of[user] == converts else 2) for i, user in enumerate(USERS)}
            items = [{"unit": user, "metric": "conversion", "value": int(converted[user])} for user in USERS]
            items = [item for i, item in enumerate(items) if item["value"] or i % 2]
            status, answer = await post_json(sidecar, "/api/v1/outcomes", items)
            assert status == 200 and (answer["joined"], answer["unmatched"]) == (len(items), 0), answer
            assert all(a["variant"] == arm_of[a["unit"]] for a in answer["items"])
            conversions = Counter(arm_of[user] for user in USERS if converted[user])

            entry = await analysis_after(sidecar, time.time(), [{"keyed": users[arm], "randomised": 0} for arm in arms])
            analysis = entry["analysis"]
            assert entry["status"] == "evaluated" and entry["failures"] == {"store": 0, "error": 0}
            assert [(a["name"], a["routed"], a["captured_units"]) for a in analysis["arms"]] == [
                (arm, {"keyed": users[arm], "randomised": 0}, users[arm]) for arm in arms
            ]
            reported = {metric["name"]: metric for metric in analysis["metrics"]}
            # Per arm: every user is a unit, its conversions and right answers exactly as posted.
            for name, hits in (("conversion", conversions), ("accuracy", right)):
                shown = [
                    (a["variant"], a["n"], round(a["mean"] * a["n"]), a["exposures"]) for a in reported[name]["arms"]
                ]
                assert shown == [(arm, users[arm], hits[arm], users[arm]) for arm in arms], name
                for a in reported[name]["arms"]:
                    assert math.isclose(a["mean"], hits[a["variant"]] / users[a["variant"]], rel_tol=1e-12)

            # The tests, by statsmodels: two-proportion z on each metric, Holm over the two.
            pvalues = [
                proportions_ztest([hits["treatment"], hits["control"]], [users["treatment"], users["control"]])[1]
                for hits in (conversions, right)
            ]
            adjusted = multipletests(pvalues, method="holm")[1]
            for name, p, p_adjusted in zip(("conversion", "accuracy"), pvalues, adjusted, strict=True):
                (effect,) = reported[name]["effects"]
                assert effect["pvalue"] == pytest.approx(p, rel=1e-9), name
                assert effect["pvalue_adjusted"] == pytest.approx(p_adjusted, rel=1e-9), name
            # What the data implies: the primary metric is significantly better (worse) after the correction.
            assert adjusted[0] < 0.05
            assert (conversions["treatment"] / users["treatment"] > conversions["control"] / users["control"]) is better
            (effect,) = reported["conversion"]["effects"]
            direction = "better" if better else "worse"
            reason = f"conversion is significantly {direction} (adjusted p = {effect['pvalue_adjusted']:.3g})"
            assert analysis["decision"] == {
                "decision": decision,
                "reason": reason + (", and no guardrail is breached" if better else ""),
                "remaining": None,
                "variants": ["treatment"],
            }
            samples = await sidecar.metrics()
            assert {
                choice: samples[
                    series("mlsidecar_experiment_decision", decision=choice, experiment=EXPERIMENT, model=MODEL)
                ]
                for choice in DECISIONS
            } == {choice: float(choice == decision) for choice in DECISIONS}


# -- 3. Shadow mode ------------------------------------------------------------------------------------------------


def shadow(challenger: int) -> dict[str, Any]:
    """A shadow experiment mirroring to the challenger on port ``challenger``."""
    return {
        "name": SHADOW,
        "mode": "shadow",
        "variants": {"control": {}, "challenger": {"upstream": f"http://127.0.0.1:{challenger}"}},
        "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
        "mde": 0.05,
    }


def shadow_requests(outcome: str) -> str:
    return series("mlsidecar_shadow_requests_total", experiment=SHADOW, model=MODEL, outcome=outcome)


def outcomes(**nonzero: float) -> dict[str, float]:
    """Mirrors by outcome: 0 for each but ``nonzero``."""
    counts: dict[str, float] = dict.fromkeys(OUTCOMES, 0.0)
    return {**counts, **nonzero}


def outcomes_of(samples: Mapping[str, float]) -> dict[str, float]:
    """``mlsidecar_shadow_requests_total`` by outcome; every outcome has a series."""
    return {outcome: samples[shadow_requests(outcome)] for outcome in OUTCOMES}


@asynccontextmanager
async def sidecars(upstream: str, *envs: Mapping[str, str]) -> AsyncIterator[list[Replica]]:
    """One sidecar process per settings in ``envs``, all in front of ``upstream``, started together."""
    async with AsyncExitStack() as stack:
        yield list(await asyncio.gather(*(stack.enter_async_context(sidecar_process(upstream, env)) for env in envs)))


async def timed(sidecar: Replica, x: float, request_id: str) -> tuple[RawResponse, float]:
    """One prediction through ``sidecar`` and how long the client waited for it, the Date header taken out.

    The model server's Date passes through the proxy; two answers a second apart differ by it alone.
    """
    start = perf_counter()
    response = await predict(sidecar, x, request_id=request_id)
    took = perf_counter() - start
    assert len(response.values("date")) == 1, response
    return replace(response, headers=[(k, v) for k, v in response.headers if k.lower() != "date"]), took


# How the challenger behaves, the outcome every mirror then has, and SIDECAR_SHADOW_TIMEOUT_SECONDS: far below
# the slow challenger's delay, so that each of its mirrors times out; ample for the others, so that a busy
# machine does not turn an error into a timeout.
SLOW_SECONDS = 1.0
CHALLENGERS = [
    pytest.param("slow", "timeout", 0.2, id="slow"),
    pytest.param("fail", "error", 5.0, id="fail"),
    pytest.param(None, "error", 5.0, id="down"),  # nothing listens on its port
]
SHADOW_REQUESTS = 200


@pytest.mark.parametrize(("challenger", "outcome", "timeout"), CHALLENGERS)
async def test_shadow_mode_leaves_every_answer_and_its_latency_as_control_alone_gives_them(
    tmp_path: Path, challenger: Behaviour | None, outcome: str, timeout: float
) -> None:
    control = Model("control")
    mirrored = None if challenger is None else Model("challenger", behaviour=challenger, delay=SLOW_SECONDS)
    async with AsyncExitStack() as stack:
        control_port = await stack.enter_async_context(run_server(control))
        if mirrored is None:
            refusing = stack.enter_context(closed_port())
            challenger_port = refusing.getsockname()[1]
        else:
            challenger_port = await stack.enter_async_context(run_server(mirrored))
        env = {
            "SIDECAR_EXPERIMENT_PATH": str(write_definition(tmp_path, shadow(challenger_port))),
            "SIDECAR_SHADOW_TIMEOUT_SECONDS": str(timeout),
            # Enough workers that the slow challenger's mirrors all go out, none queued long or dropped.
            "SIDECAR_SHADOW_CONCURRENCY": "100",
        }
        alone, shadowed = await stack.enter_async_context(sidecars(f"http://127.0.0.1:{control_port}", {}, env))
        took: dict[str, list[float]] = {"alone": [], "shadowed": []}
        rng = random.Random(5)
        for i in range(SHADOW_REQUESTS):
            x = rng.uniform(-2.0, 2.0)
            # The same request to both, each first in turn: a mirror runs while the next request does, and that
            # request is as often the one run's as the other's.
            order = [("alone", alone), ("shadowed", shadowed)][:: 1 if i % 2 else -1]
            answers = {}
            for name, sidecar in order:
                answers[name], seconds = await timed(sidecar, x, f"r-{i}")
                took[name].append(seconds)
            # Byte for byte what control alone answers through a sidecar without the experiment: status, every
            # header in order but Date, body.
            assert answers["shadowed"] == answers["alone"], i
            assert answers["shadowed"].status == 200 and served_by(answers["shadowed"]) == "control"
        # The client waits no longer for its answer: medians within 50% and a millisecond (a test on a shared
        # machine, not the benchmark, which holds the strict figures).
        median = {name: statistics.median(seconds) for name, seconds in took.items()}
        assert median["shadowed"] <= 1.5 * median["alone"] + 0.001, median
        assert max(took["shadowed"]) < SLOW_SECONDS, max(took["shadowed"])

        # Every request was mirrored once, and every mirror ended in its outcome.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while sum((counts := outcomes_of(samples := await shadowed.metrics())).values()) < SHADOW_REQUESTS:
            assert loop.time() < deadline, counts
            await asyncio.sleep(0.05)
        assert counts == outcomes(**{outcome: SHADOW_REQUESTS})
        assert samples[requests_total("control")] == SHADOW_REQUESTS
        if mirrored is not None:
            # The challenger got a copy of each request, as control got it from each of the two sidecars.
            assert len(mirrored.seen) == SHADOW_REQUESTS
            assert Counter(control.seen) == {body: 2 for body in mirrored.seen}


# Process mode sends the mirrors from the monitoring process, inline mode from the proxy's loop: both the same.
@pytest.mark.parametrize("plane", ["process", "inline"])
async def test_a_full_shadow_queue_drops_the_mirror_and_counts_it(tmp_path: Path, plane: str) -> None:
    control = Model("control")
    # Holds every mirror until the test lets it answer: one in flight, one queued, the rest dropped.
    challenger = Model("challenger", behaviour="hold")
    async with run_server(control) as control_port, run_server(challenger) as challenger_port:
        env = {
            "SIDECAR_MONITORING_PLANE": plane,
            "SIDECAR_EXPERIMENT_PATH": str(write_definition(tmp_path, shadow(challenger_port))),
            "SIDECAR_SHADOW_QUEUE_SIZE": "1",
            "SIDECAR_SHADOW_CONCURRENCY": "1",
            "SIDECAR_SHADOW_TIMEOUT_SECONDS": "8",
        }
        async with sidecar_process(f"http://127.0.0.1:{control_port}", env) as sidecar:
            assert served_by(await predict(sidecar, 0.5)) == "control"
            # The one worker has taken the first mirror: it waits at the challenger.
            await wait_until(lambda: len(challenger.seen) == 1)
            for i in range(19):
                assert served_by(await predict(sidecar, i / 10)) == "control"
            # The second waits in the queue of one; the 18 after it find the queue full.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while (counts := outcomes_of(await sidecar.metrics()))["dropped_queue_full"] < 18:
                assert loop.time() < deadline, counts
                await asyncio.sleep(0.05)
            assert counts == outcomes(dropped_queue_full=18)
            challenger.release.set()
            deadline = loop.time() + 5
            while sum((counts := outcomes_of(await sidecar.metrics())).values()) < 20:
                assert loop.time() < deadline, counts
                await asyncio.sleep(0.05)
            assert counts == outcomes(dropped_queue_full=18, sent=2)
            assert len(challenger.seen) == 2


async def test_mirrors_lost_with_a_killed_monitoring_process_are_counted_and_mirroring_resumes(
    tmp_path: Path,
) -> None:
    """In process mode the monitoring process sends the mirrors: killing it loses those it held, counted
    ``dropped_restart``; serving never notices, and its successor sends the next ones."""
    control = Model("control")
    challenger = Model("challenger", behaviour="hold")
    async with run_server(control) as control_port, run_server(challenger) as challenger_port:
        env = {
            "SIDECAR_EXPERIMENT_PATH": str(write_definition(tmp_path, shadow(challenger_port))),
            "SIDECAR_SHADOW_CONCURRENCY": "4",
            "SIDECAR_SHADOW_TIMEOUT_SECONDS": "30",
        }
        async with sidecar_process(f"http://127.0.0.1:{control_port}", env) as sidecar:
            for i in range(10):
                assert served_by(await predict(sidecar, i / 10)) == "control"
            # Four mirrors wait at the challenger, sent by the monitoring process; the rest wait behind them.
            await wait_until(lambda: len(challenger.seen) == 4)
            _, ready = await sidecar.readyz()
            pid = ready["monitoring"]["pid"]
            os.kill(pid, signal.SIGKILL)
            up = f'mlsidecar_monitor_up{{model="{MODEL}"}}'
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while (counts := outcomes_of(await sidecar.metrics()))["dropped_restart"] < 4:
                assert loop.time() < deadline, counts
                await asyncio.sleep(0.05)
            # Serving goes on meanwhile, and so do its mirrors once the successor is up.
            challenger.release.set()
            for i in range(5):
                assert served_by(await predict(sidecar, i / 10)) == "control"
            deadline = loop.time() + 20
            while (samples := await sidecar.metrics()).get(up) != 1 or sum(outcomes_of(samples).values()) < 15:
                assert loop.time() < deadline, outcomes_of(samples)
                await asyncio.sleep(0.05)
            counts = outcomes_of(samples)
            # Those handed to the killed process are lost; any it had not been handed yet went to its successor.
            assert counts["dropped_restart"] >= 4
            assert counts == outcomes(dropped_restart=counts["dropped_restart"], sent=15 - counts["dropped_restart"])
            assert samples[f'mlsidecar_monitor_restarts_total{{model="{MODEL}"}}'] == 1


# -- 4. The fallback -----------------------------------------------------------------------------------------------


async def test_the_fallback_flag_wins_over_the_experiment(tmp_path: Path) -> None:
    weights = {"control": 0.5, "treatment": 0.5}
    models = {name: Model(name) for name in ("control", "treatment", "fallback")}
    async with AsyncExitStack() as stack:
        ports = {name: await stack.enter_async_context(run_server(model)) for name, model in models.items()}
        env = {
            "SIDECAR_EXPERIMENT_PATH": str(
                write_definition(tmp_path, split(weights, upstreams={"treatment": ports["treatment"]}))
            ),
            "SIDECAR_FALLBACK_URL": f"http://127.0.0.1:{ports['fallback']}",
        }
        sidecar = await stack.enter_async_context(sidecar_process(f"http://127.0.0.1:{ports['control']}", env))
        assigner = Assigner(list(weights.items()), EXPERIMENT)
        before = Counter([served_by(await predict(sidecar, 0.5, user=user)) for user in USERS[:20]])
        assert before == Counter(assigner.assign(user).variant for user in USERS[:20])

        status, answer = await post_json(
            sidecar, "/api/v1/flags/use_fallback_model", {"value": True, "reason": "the experiment misbehaves"}
        )
        assert status == 200, answer
        # Keyed or not, every request goes to the fallback model, in no arm.
        during = [served_by(await predict(sidecar, 0.5, user=user)) for user in USERS[:30]]
        during += [served_by(await predict(sidecar, 0.5)) for _ in range(5)]
        assert set(during) == {"fallback"}
        samples = await sidecar.metrics()
        assert {arm: samples[units_total(arm)] for arm in weights} == {arm: before[arm] for arm in weights}
        assert samples[requests_total("fallback")] == len(during)
        assert {arm: samples[requests_total(arm)] for arm in weights} == {arm: before[arm] for arm in weights}
        assert samples[series("mlsidecar_fallback_active", model=MODEL)] == 1
        assert {name: len(model.seen) for name, model in models.items()} == {**before, "fallback": len(during)}

        # Cleared, the experiment routes again, each user to its arm.
        status, answer = await post_json(sidecar, "/api/v1/flags/use_fallback_model", {"value": False})
        assert status == 200, answer
        assert served_by(await predict(sidecar, 0.5, user="u-0")) == assigner.assign("u-0").variant
        samples = await sidecar.metrics()
        assert sum(samples[units_total(arm)] for arm in weights) == sum(before.values()) + 1
        assert samples[requests_total("fallback")] == len(during)
