"""Notifier delivery to a real HTTP server on 127.0.0.1: payloads, re-sends, drops and failures."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from sidecar.alerting.conditions import parse
from sidecar.alerting.engine import AlertEngine
from sidecar.alerting.notify import Notifier, alertmanager_url
from sidecar.alerting.rules import AlertRule
from sidecar.alerting.signals import Signals
from sidecar.upstream.client import UpstreamClient
from tests.servers import client_for, read_body, run_server

pytestmark = pytest.mark.anyio

T0 = 1_780_000_000.0
BAD = Signals(values={"error_rate": 0.9}, model_version="7")
GOOD = Signals(values={"error_rate": 0.0}, model_version="7")


@dataclass
class Receiver:
    """Records every POST; answers the queued statuses in turn, then 200. ``hold`` blocks answers while set."""

    statuses: list[int] = field(default_factory=list)
    posts: list[tuple[str, Any]] = field(default_factory=list)
    hold: asyncio.Event | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http" and scope["method"] == "POST"
        assert (b"content-type", b"application/json") in scope["headers"]
        self.posts.append((scope["path"], orjson.loads(await read_body(receive))))
        if self.hold is not None:
            await self.hold.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    def bodies(self, path: str) -> list[Any]:
        return [body for p, body in self.posts if p == path]


@asynccontextmanager
async def serve(receiver: Receiver) -> AsyncIterator[UpstreamClient]:
    async with run_server(receiver) as port, client_for(port) as client:
        yield client


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition; the generous timeout only bounds a failing test, nothing relies on it."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def count(notifier: Notifier, target: str, outcome: str) -> float | None:
    registry = CollectorRegistry()
    registry.register(notifier.metrics.notifications)
    return registry.get_sample_value(
        "mlsidecar_alert_notifications_total", {"model": "iris", "target": target, "outcome": outcome}
    )


def errors_engine(for_seconds: float = 0.0) -> AlertEngine:
    rule = AlertRule(
        "serving_errors_high",
        parse("error_rate > 0.5"),
        "P1",
        runbook="https://runbooks.example/serving_errors_high.md",
        for_seconds=for_seconds,
        labels={"team": "ml"},
        description="More than half of the requests fail.",
    )
    return AlertEngine([rule], model="iris")


def close_soon() -> float:
    return asyncio.get_running_loop().time() + 5


def test_alertmanager_url_keeps_a_path_prefix() -> None:
    assert alertmanager_url("http://am:9093") == ("http://am:9093", "/api/v2/alerts")
    assert alertmanager_url("https://am.example/prefix/") == ("https://am.example", "/prefix/api/v2/alerts")


async def test_alertmanager_receives_firing_then_resolved() -> None:
    receiver = Receiver()
    async with serve(receiver) as client:
        engine = errors_engine(for_seconds=60)
        notifier = Notifier(
            "iris",
            firing=engine.firing,
            alertmanager=client,
            alertmanager_path="/am/api/v2/alerts",
            generator_url="http://sidecar:9100/",
            resend_interval=3600,
        )
        engine.subscribe(notifier.enqueue)
        task = asyncio.create_task(notifier.run())
        engine.evaluate(BAD, T0)  # pending: nobody outside is told
        engine.evaluate(BAD, T0 + 60)
        await until(lambda: len(receiver.posts) == 1)
        engine.evaluate(GOOD, T0 + 120)
        await until(lambda: len(receiver.posts) == 2)
        await notifier.close(close_soon())
        await task
    [firing], [resolved] = receiver.bodies("/am/api/v2/alerts")
    assert firing == {
        "labels": {"alertname": "serving_errors_high", "severity": "P1", "model": "iris", "team": "ml"},
        "annotations": {
            "summary": "error_rate = 0.9 (error_rate > 0.5)",
            "description": "More than half of the requests fail.",
            "runbook_url": "https://runbooks.example/serving_errors_high.md",
            "value": "0.9",
        },
        "startsAt": "2026-05-28T20:27:40.000Z",
        "generatorURL": "http://sidecar:9100/",
    }
    assert resolved["labels"] == firing["labels"]
    assert resolved["startsAt"] == firing["startsAt"]
    assert resolved["endsAt"] == "2026-05-28T20:28:40.000Z"
    assert count(notifier, "alertmanager", "delivered") == 2
    assert count(notifier, "webhook", "delivered") is None  # not configured: no series


async def test_firing_alerts_are_resent_until_resolved() -> None:
    receiver = Receiver()
    async with serve(receiver) as client:
        engine = errors_engine()
        notifier = Notifier("iris", firing=engine.firing, alertmanager=client, resend_interval=0.02)
        engine.subscribe(notifier.enqueue)
        task = asyncio.create_task(notifier.run())
        engine.evaluate(BAD, T0)
        await until(lambda: len(receiver.posts) >= 4)
        engine.evaluate(GOOD, T0 + 60)
        await until(lambda: any("endsAt" in alert for _, body in receiver.posts for alert in body))
        sent = len(receiver.posts)
        await notifier.close(close_soon())
        await task
    bodies = receiver.bodies("/api/v2/alerts")
    # The first send and the re-sends carry the same alert, with the same start.
    firing = [body for body in bodies if "endsAt" not in body[0]]
    assert len(firing) >= 4
    assert all(body == firing[0] for body in firing)
    # Once resolved, nothing is firing, so a re-send has nothing to send: the resolve is the last POST.
    assert "endsAt" in bodies[-1][0] and len(bodies) == sent
    assert count(notifier, "alertmanager", "delivered") == sent


async def test_webhook_gets_one_post_per_transition() -> None:
    receiver = Receiver()
    async with serve(receiver) as client:
        engine = errors_engine()
        notifier = Notifier("iris", firing=engine.firing, webhook=client, webhook_path="/hooks/alerts?k=1")
        engine.subscribe(notifier.enqueue)
        # Queued before run() starts, so they are delivered as one batch: still one POST each.
        engine.evaluate(BAD, T0)
        context = {"reason": "drift", "share": np.float64(0.4), "path": PurePosixPath("/data/new.csv")}
        engine.record_event("retraining_triggered", "P4", "retraining asked: drift", context=context, now=T0)
        engine.evaluate(GOOD, T0 + 60)
        task = asyncio.create_task(notifier.run())
        await until(lambda: len(receiver.posts) == 3)
        await notifier.close(close_soon())
        await task
    assert [p for p, _ in receiver.posts] == ["/hooks/alerts"] * 3
    first, event, resolved = (body for _, body in receiver.posts)
    assert first == {
        "alert": "serving_errors_high",
        "severity": "P1",
        "state": "firing",
        "previous": "inactive",
        "model": "iris",
        "value": 0.9,
        "summary": "error_rate = 0.9 (error_rate > 0.5)",
        "description": "More than half of the requests fail.",
        "context": {
            "condition": "error_rate > 0.5",
            "terms": [
                {
                    "expression": "error_rate > 0.5",
                    "signal": "error_rate",
                    "feature": None,
                    "value": 0.9,
                    "threshold": 0.5,
                    "result": True,
                }
            ],
            "top_drift": [],
            "model_version": "7",
        },
        "runbook": "https://runbooks.example/serving_errors_high.md",
        "labels": {"team": "ml"},
        "started_at": "2026-05-28T20:26:40.000Z",
        "timestamp": "2026-05-28T20:26:40.000Z",
    }
    assert (event["alert"], event["severity"], event["state"]) == ("retraining_triggered", "P4", "firing")
    # numpy numbers go as numbers, anything else JSON lacks as text.
    assert event["context"] == {
        "reason": "drift",
        "share": 0.4,
        "path": "/data/new.csv",
        "model_version": "7",
    }
    assert (resolved["alert"], resolved["state"], resolved["value"]) == ("serving_errors_high", "resolved", 0.0)
    assert resolved["timestamp"] == "2026-05-28T20:27:40.000Z"
    assert count(notifier, "webhook", "delivered") == 3


async def test_both_targets_and_a_full_queue_drops_and_counts() -> None:
    receiver = Receiver()
    async with serve(receiver) as client:
        engine = errors_engine()
        notifier = Notifier(
            "iris", firing=engine.firing, alertmanager=client, webhook=client, webhook_path="/hook", queue_size=2
        )
        engine.subscribe(notifier.enqueue)
        # No run() yet: the queue fills. enqueue neither blocks nor raises.
        for i in range(5):
            engine.evaluate(BAD if i % 2 == 0 else GOOD, T0 + i * 60)
        assert count(notifier, "alertmanager", "dropped") == 3
        assert count(notifier, "webhook", "dropped") == 3
        task = asyncio.create_task(notifier.run())
        await notifier.close(close_soon())
        await task
    # The two that fitted went to both targets: one Alertmanager POST (a batch), two webhook POSTs.
    assert [len(body) for body in receiver.bodies("/api/v2/alerts")] == [2]
    assert len(receiver.bodies("/hook")) == 2
    assert count(notifier, "alertmanager", "delivered") == 2
    assert count(notifier, "webhook", "delivered") == 2


async def test_failing_targets_are_counted_failed() -> None:
    receiver = Receiver(statuses=[500, 500, 400])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]  # closed again: nothing listens there
    dead = UpstreamClient(f"http://127.0.0.1:{dead_port}", timeout=2, connect_timeout=2, max_connections=1)
    await dead.open()
    try:
        async with serve(receiver) as client:
            engine = errors_engine()
            notifier = Notifier(
                "iris",
                firing=engine.firing,
                alertmanager=client,
                webhook=dead,
                attempts=2,
                backoff=0.01,
                resend_interval=3600,
            )
            engine.subscribe(notifier.enqueue)
            task = asyncio.create_task(notifier.run())
            engine.evaluate(BAD, T0)  # 500, retried, 500 again: failed
            await until(lambda: count(notifier, "alertmanager", "failed") == 1)
            engine.evaluate(GOOD, T0 + 60)  # 400: not retried
            await until(lambda: count(notifier, "alertmanager", "failed") == 2)
            await notifier.close(close_soon())
            await task
    finally:
        await dead.close()
    assert len(receiver.posts) == 3
    assert count(notifier, "alertmanager", "delivered") == 0
    assert count(notifier, "webhook", "failed") == 2
    assert count(notifier, "webhook", "delivered") == 0


async def test_close_cancels_at_the_deadline_and_counts_the_rest() -> None:
    receiver = Receiver(hold=asyncio.Event())
    async with serve(receiver) as client:
        engine = errors_engine()
        notifier = Notifier("iris", firing=engine.firing, webhook=client, resend_interval=3600)
        engine.subscribe(notifier.enqueue)
        task = asyncio.create_task(notifier.run())
        engine.evaluate(BAD, T0)
        await until(lambda: len(receiver.posts) == 1)  # stuck in flight
        engine.evaluate(GOOD, T0 + 60)  # queued behind it
        await notifier.close(asyncio.get_running_loop().time() + 0.05)
        assert task.cancelled()
        engine.evaluate(BAD, T0 + 120)  # after close: dropped, not queued
        assert receiver.hold is not None
        receiver.hold.set()
    assert count(notifier, "webhook", "failed") == 1
    assert count(notifier, "webhook", "dropped") == 2
    assert count(notifier, "webhook", "delivered") == 0


async def test_without_targets_nothing_is_queued() -> None:
    engine = errors_engine()
    notifier = Notifier("iris", firing=engine.firing)
    engine.subscribe(notifier.enqueue)
    engine.evaluate(BAD, T0)
    task = asyncio.create_task(notifier.run())
    await notifier.close(close_soon())
    await task
    registry = CollectorRegistry()
    registry.register(notifier.metrics.notifications)
    assert [family.samples for family in registry.collect()] == [[]]  # no target, no series


def test_bad_arguments() -> None:
    cases: list[dict[str, Any]] = [{"queue_size": 0}, {"attempts": 0}, {"resend_interval": 0}]
    for bad in cases:
        with pytest.raises(ValueError):
            Notifier("iris", firing=list, **bad)
