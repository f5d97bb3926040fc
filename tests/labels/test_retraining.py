from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from sidecar.labels.retraining import (
    OUTCOMES,
    REASONS,
    Retrainer,
    RetrainPolicy,
    model_trained_at,
    split_webhook_url,
)
from sidecar.records import parse_rfc3339
from tests.servers import client_for, read_body, run_server

pytestmark = pytest.mark.anyio

T0 = 1_780_000_000.0  # the model's training time in these tests
DAY = 86_400.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def retrainer(policy: RetrainPolicy, **kwargs: Any) -> Retrainer:
    kwargs.setdefault("trained_at", T0)
    kwargs.setdefault("baseline", {"accuracy": 0.9, "rmse": 2.0})
    kwargs.setdefault("clock", Clock(T0))
    return Retrainer("iris", policy, **kwargs)


def count(r: Retrainer, reason: str, outcome: str) -> float | None:
    registry = CollectorRegistry()
    registry.register(r.metrics.triggers)
    return registry.get_sample_value(
        "mlsidecar_retrain_triggers_total", {"model": "iris", "reason": reason, "outcome": outcome}
    )


def test_parse_rfc3339() -> None:
    assert parse_rfc3339("2026-11-26T08:00:00Z") == 1_795_680_000.0
    assert parse_rfc3339("2026-11-26T10:00:00+02:00") == 1_795_680_000.0
    with pytest.raises(ValueError, match="not an RFC 3339 time"):
        parse_rfc3339("yesterday")
    with pytest.raises(ValueError, match="no time zone"):
        parse_rfc3339("2026-11-26T08:00:00")
    assert model_trained_at(5.0, "2026-11-26T08:00:00Z") == 5.0
    assert model_trained_at(None, "2026-11-26T08:00:00Z") == 1_795_680_000.0
    assert model_trained_at(None, None) is None


def test_policy_validation() -> None:
    for bad in ({"interval_seconds": 0}, {"max_drop": -0.1}, {"min_new_labels": 0}, {"cooldown_seconds": -1}):
        with pytest.raises(ValueError):
            RetrainPolicy(**bad)


def test_split_webhook_url() -> None:
    assert split_webhook_url("https://ci:8443/hooks/retrain/?token=a") == ("https://ci:8443", "/hooks/retrain/?token=a")
    assert split_webhook_url("http://ci") == ("http://ci", "/")


def test_every_child_exists_from_start_up() -> None:
    r = retrainer(RetrainPolicy())
    assert all(count(r, reason, outcome) == 0 for reason in REASONS for outcome in OUTCOMES)


def test_scheduled_fires_each_interval_from_training_time() -> None:
    r = retrainer(RetrainPolicy(interval_seconds=7 * DAY, cooldown_seconds=0))
    assert r.evaluate({}, now=T0 + 7 * DAY - 1) == []
    [trigger] = r.evaluate({}, now=T0 + 7 * DAY)
    assert trigger.reason == "scheduled"
    assert trigger.context == {"model_age_seconds": 7 * DAY, "interval_seconds": 7 * DAY}
    assert trigger.outcome == "recorded"
    # The next one counts from the last scheduled trigger, not from the training time.
    assert r.evaluate({}, now=T0 + 14 * DAY - 1) == []
    assert [t.reason for t in r.evaluate({}, now=T0 + 14 * DAY)] == ["scheduled"]
    # Long after, it fires once, not once per missed interval.
    assert len(r.evaluate({}, now=T0 + 100 * DAY)) == 1
    assert r.evaluate({}, now=T0 + 100 * DAY + 1) == []
    assert count(r, "scheduled", "recorded") == 3


def test_scheduled_without_training_time_counts_from_start() -> None:
    clock = Clock(T0 + 50 * DAY)
    r = retrainer(RetrainPolicy(interval_seconds=DAY), trained_at=None, clock=clock)
    assert r.evaluate({}) == []
    clock.now += DAY
    [trigger] = r.evaluate({})
    assert trigger.context["model_age_seconds"] is None
    assert r.status()["model_age_seconds"] is None


@pytest.mark.parametrize(
    ("performance", "fires", "metric"),
    [
        ({"accuracy": 0.85, "rmse": 2.0}, False, None),  # accuracy down 5.6%: within 10%
        ({"accuracy": 0.80, "rmse": 2.0}, True, "accuracy"),  # accuracy down 11.1%
        ({"accuracy": 0.99, "rmse": 2.0}, False, None),  # better is never a drop
        ({"accuracy": 0.9, "rmse": 2.1}, False, None),  # rmse up 5%
        ({"accuracy": 0.9, "rmse": 2.5}, True, "rmse"),  # rmse up 25%: error metrics, higher is worse
        ({"accuracy": 0.9, "rmse": 1.0}, False, None),  # rmse halved is an improvement
        ({"accuracy": 0.5, "rmse": 2.4}, True, "accuracy"),  # both (44% vs 20%): the worst is reported
        ({"accuracy": None, "rmse": None}, False, None),  # too few labels
        ({"f1": 0.1}, False, None),  # no baseline for f1
    ],
)
def test_performance_direction(performance: dict[str, float | None], fires: bool, metric: str | None) -> None:
    r = retrainer(RetrainPolicy(max_drop=0.1))
    triggers = r.evaluate(performance, now=T0 + 1)
    assert [t.reason for t in triggers] == (["performance"] if fires else [])
    if fires:
        context = triggers[0].context
        assert context["metric"] == metric
        assert context["value"] == performance[str(metric)]
        assert context["max_drop"] == 0.1
        value = float(performance[str(metric)] or 0)
        expected = (value - 2.0) / 2.0 if metric == "rmse" else (0.9 - value) / 0.9
        assert context["drop"] == pytest.approx(expected)


def test_non_positive_baselines_are_left_out() -> None:
    r = retrainer(RetrainPolicy(max_drop=0.1), baseline={"accuracy": 0.0, "mae": float("nan"), "rmse": 1.0})
    assert r.baseline == {"rmse": 1.0}
    assert r.evaluate({"accuracy": 0.1, "mae": 9.0}, now=T0) == []


def test_drift_fires_on_drift_verdict_only() -> None:
    r = retrainer(RetrainPolicy(cooldown_seconds=0))
    assert r.evaluate({}, "no_drift", drifted_share=0.1, now=T0) == []
    assert r.evaluate({}, None, now=T0) == []
    [trigger] = r.evaluate({}, "drift", drifted_share=0.5, now=T0)
    assert (trigger.reason, trigger.context) == ("drift", {"drifted_share": 0.5})
    off = retrainer(RetrainPolicy(on_drift=False))
    assert off.evaluate({}, "drift", now=T0) == []


def test_new_data_counts_labels_since_the_last_trigger() -> None:
    r = retrainer(RetrainPolicy(min_new_labels=100, cooldown_seconds=0))
    r.observe_labels(60)
    assert r.evaluate({}, now=T0) == []
    r.observe_labels(40)
    [trigger] = r.evaluate({}, now=T0)
    assert trigger.context == {"new_labels": 100, "min_new_labels": 100}
    assert r.evaluate({}, now=T0) == []  # the count restarted
    # Any trigger restarts it: the retraining it starts sees those labels.
    r.observe_labels(99)
    assert [t.reason for t in r.evaluate({}, "drift", now=T0)] == ["drift"]
    r.observe_labels(1)
    assert r.evaluate({}, now=T0) == []


def test_cooldown_is_per_reason_and_counted() -> None:
    r = retrainer(RetrainPolicy(max_drop=0.1, cooldown_seconds=3600))
    bad = {"accuracy": 0.5}
    assert len(r.evaluate(bad, now=T0)) == 1
    assert r.evaluate(bad, now=T0 + 3599) == []
    assert r.evaluate(bad, now=T0 + 3599) == []
    assert count(r, "performance", "suppressed") == 2
    # Another reason is not held back by the performance trigger.
    assert [t.reason for t in r.evaluate(bad, "drift", now=T0 + 3599)] == ["drift"]
    assert count(r, "performance", "suppressed") == 3
    assert [t.reason for t in r.evaluate(bad, now=T0 + 3600)] == ["performance"]
    assert count(r, "performance", "recorded") == 2
    assert r.last_trigger is not None and r.last_trigger.timestamp == T0 + 3600


def test_status() -> None:
    r = retrainer(RetrainPolicy(interval_seconds=DAY, max_drop=0.1))
    assert r.status(now=T0 + 10) == {
        "trained_at": "2026-05-28T20:26:40.000Z",
        "model_age_seconds": 10.0,
        "baseline": {"accuracy": 0.9, "rmse": 2.0},
        "new_labels": 0,
        "next_scheduled_at": "2026-05-29T20:26:40.000Z",
        "last_trigger": None,
    }
    r.evaluate({"accuracy": 0.5}, now=T0 + 20)
    last = r.status(now=T0 + 30)["last_trigger"]
    assert last["reason"] == "performance"
    assert last["outcome"] == "recorded"
    assert last["context"]["metric"] == "accuracy"
    assert last["timestamp"] == "2026-05-28T20:27:00.000Z"


@dataclass
class Hook:
    """A webhook receiver answering the queued statuses in turn, then 200."""

    statuses: list[int] = field(default_factory=list)
    bodies: list[tuple[str, bytes, list[tuple[bytes, bytes]]]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.bodies.append((scope["path"], await read_body(receive), scope["headers"]))
        status = self.statuses.pop(0) if self.statuses else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


async def test_webhook_receives_the_trigger() -> None:
    hook = Hook()
    async with run_server(hook) as port, client_for(port) as client:
        r = retrainer(RetrainPolicy(max_drop=0.1), webhook=client, webhook_path="/hooks/retrain")
        [trigger] = r.evaluate({"accuracy": 0.45}, now=T0 + 60)
        assert trigger.outcome == "pending"  # evaluate does not wait for the delivery
        await r.close(asyncio.get_running_loop().time() + 5)
    [(path, body, headers)] = hook.bodies
    assert path == "/hooks/retrain"
    assert (b"content-type", b"application/json") in headers
    assert orjson.loads(body) == {
        "model": "iris",
        "reason": "performance",
        "context": {"metric": "accuracy", "value": 0.45, "baseline": 0.9, "drop": 0.5, "max_drop": 0.1},
        "timestamp": "2026-05-28T20:27:40.000Z",
    }
    assert trigger.outcome == "sent"
    assert count(r, "performance", "sent") == 1


async def test_retries_5xx_with_backoff_then_sent() -> None:
    hook = Hook(statuses=[500, 500])
    async with run_server(hook) as port, client_for(port) as client:
        r = retrainer(RetrainPolicy(), webhook=client, attempts=3, backoff=0.01)
        [trigger] = r.evaluate({}, "drift", drifted_share=0.4, now=T0)
        await r.close(asyncio.get_running_loop().time() + 5)
    assert len(hook.bodies) == 3
    assert len({body for _, body, _ in hook.bodies}) == 1  # the same trigger each time
    assert (trigger.outcome, trigger.error) == ("sent", None)
    assert count(r, "drift", "sent") == 1
    assert count(r, "drift", "failed") == 0


async def test_4xx_is_not_retried() -> None:
    hook = Hook(statuses=[400])
    async with run_server(hook) as port, client_for(port) as client:
        r = retrainer(RetrainPolicy(), webhook=client, backoff=0.01)
        [trigger] = r.evaluate({}, "drift", now=T0)
        await r.close(asyncio.get_running_loop().time() + 5)
    assert len(hook.bodies) == 1
    assert (trigger.outcome, trigger.error) == ("failed", "HTTP 400")
    assert count(r, "drift", "failed") == 1


async def test_dead_port_fails_after_bounded_retries() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    async with client_for(port) as client:
        r = retrainer(RetrainPolicy(min_new_labels=1), webhook=client, attempts=3, backoff=0.01)
        r.observe_labels(5)
        [trigger] = r.evaluate({}, now=T0)
        await r.close(asyncio.get_running_loop().time() + 5)
    assert trigger.outcome == "failed"
    assert trigger.error is not None and trigger.error.startswith("connect")
    assert count(r, "new_data", "failed") == 1
    assert r.status()["last_trigger"]["outcome"] == "failed"


async def test_close_cancels_at_the_deadline_and_counts_failed() -> None:
    hang = asyncio.Event()

    async def stuck(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        await hang.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async with run_server(stuck) as port, client_for(port) as client:
        r = retrainer(RetrainPolicy(cooldown_seconds=0), webhook=client, max_in_flight=1)
        [first] = r.evaluate({}, "drift", now=T0)
        [second] = r.evaluate({}, "drift", now=T0 + 1)  # the one slot is taken
        assert (second.outcome, second.error) == ("failed", "too many deliveries in flight")
        await asyncio.sleep(0.05)
        await r.close(asyncio.get_running_loop().time() + 0.05)
        hang.set()
    assert first.outcome == "failed"
    assert count(r, "drift", "failed") == 2
