"""Model staleness and retraining triggers, delivered to a webhook.

:class:`Retrainer` decides, synchronously and in O(1) per call, whether the
model should be retrained, and POSTs each trigger to a webhook in the
background. Reasons:

- ``scheduled``: ``interval_seconds`` have passed since the anchor, which is
  the model's training time (``SIDECAR_MODEL_TRAINED_AT``, else the reference
  profile's ``created_at``, else the moment the :class:`Retrainer` was made),
  then the time of the last scheduled trigger. A model that is ten intervals
  old fires once, not ten times: the anchor moves to *now*, not by one
  interval, so a restart after a long outage does not replay a burst.
- ``performance``: a realised metric is worse than its baseline by more than
  ``max_drop``, relative to the baseline. Direction comes from
  :data:`LOWER_IS_BETTER`:

  ==================================================  ==========================================
  metric                                              drop
  ==================================================  ==========================================
  mae, mse, rmse, mape, log_loss (errors)             ``(value - baseline) / baseline`` (a rise)
  every other (accuracy, f1, auc_roc, ndcg, ...)      ``(baseline - value) / baseline`` (a fall)
  ==================================================  ==========================================

  Baselines that are not finite and positive are left out: a relative
  change from zero is undefined. The trigger reports the worst metric.
- ``drift``: the dataset-level drift verdict is ``"drift"``.
- ``new_data``: at least ``min_new_labels`` labels arrived since the last
  trigger of any reason (a retraining run started by any trigger sees them).

The cooldown is **per reason**: a ``drift`` trigger does not hold back a
``performance`` one, whose cause is different and may be more urgent. A
trigger within ``cooldown_seconds`` of the last one of its reason is
suppressed and counted, once per :meth:`Retrainer.evaluate` call in which its
condition held. A suppressed scheduled trigger still moves the schedule on.

Body of the POST: ``{"model", "reason", "context", "timestamp"}``, the
timestamp in RFC 3339 UTC. Delivery retries like :class:`~sidecar.sinks.http.HttpSink`:
a connection error, a timeout, a 5xx, a 408 or a 429 is retried after an
exponential backoff with full jitter, ``attempts`` tries in all. Without a
webhook, triggers are still decided, shown by :meth:`Retrainer.status` and
counted with outcome ``recorded``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson

from sidecar.prometheus import counter
from sidecar.records import parse_rfc3339, rfc3339
from sidecar.upstream.client import UpstreamClient
from sidecar.upstream.delivery import post_with_retries

__all__ = [
    "LOWER_IS_BETTER",
    "OUTCOMES",
    "REASONS",
    "Reason",
    "RetrainMetrics",
    "RetrainPolicy",
    "Retrainer",
    "Trigger",
    "model_trained_at",
    "split_webhook_url",
]

logger = logging.getLogger("sidecar.labels.retraining")

Reason = Literal["scheduled", "performance", "drift", "new_data"]
REASONS: tuple[Reason, ...] = ("scheduled", "performance", "drift", "new_data")
OUTCOMES: tuple[str, ...] = ("sent", "failed", "suppressed", "recorded")
# Error metrics of sidecar.performance: for these a higher value is worse.
LOWER_IS_BETTER = frozenset({"mae", "mse", "rmse", "mape", "log_loss"})
# Other client errors mean the trigger itself was refused: it would be refused again.

ContextValue = float | int | str | None


def split_webhook_url(url: str) -> tuple[str, str]:
    """The base URL for an :class:`UpstreamClient` and the path-and-query to POST to."""
    parts = urlsplit(url)
    # The path goes on the wire as configured: UpstreamClient would strip a trailing "/" from a base.
    return f"{parts.scheme}://{parts.netloc}", (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True)
class RetrainPolicy:
    """When to ask for retraining; ``None`` turns a reason off.

    Usage::

        RetrainPolicy(interval_seconds=7 * 86400, max_drop=0.05, min_new_labels=10_000, cooldown_seconds=3600)
    """

    interval_seconds: float | None = None
    max_drop: float | None = None
    min_new_labels: int | None = None
    cooldown_seconds: float = 3600.0
    on_drift: bool = True

    def __post_init__(self) -> None:
        if self.interval_seconds is not None and not self.interval_seconds > 0:
            raise ValueError(f"interval_seconds must be positive, got {self.interval_seconds}")
        if self.max_drop is not None and not self.max_drop > 0:
            raise ValueError(f"max_drop must be positive, got {self.max_drop}")
        if self.min_new_labels is not None and self.min_new_labels < 1:
            raise ValueError(f"min_new_labels must be at least 1, got {self.min_new_labels}")
        if not self.cooldown_seconds >= 0:
            raise ValueError(f"cooldown_seconds must be zero or more, got {self.cooldown_seconds}")


@dataclass(slots=True)
class Trigger:
    """One decision to retrain. ``outcome`` is ``pending`` until its delivery ends."""

    model: str
    reason: Reason
    context: dict[str, ContextValue]
    timestamp: float
    outcome: str = "pending"
    error: str | None = None

    def body(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "reason": self.reason,
            "context": self.context,
            "timestamp": rfc3339(self.timestamp),
        }


class RetrainMetrics:
    """``mlsidecar_retrain_triggers_total{model,reason,outcome}``, a prometheus-client counter.

    Every child is bound at start-up. The owner of the registry (the
    assembly) registers :attr:`triggers`.

    Usage::

        metrics = RetrainMetrics("iris")
        registry.register(metrics.triggers)
        metrics.series["drift", "sent"].inc()
    """

    def __init__(self, model: str) -> None:
        self.triggers = counter(
            "retrain_triggers_total",
            "Retraining triggers: sent, failed after retries, suppressed by the cooldown, or recorded (no webhook).",
            ("model", "reason", "outcome"),
        )
        self.series = {(r, o): self.triggers.labels(model, r, o) for r in REASONS for o in OUTCOMES}


class Retrainer:
    """Decides retraining triggers and delivers them to a webhook.

    The caller owns ``webhook``: it opens it before the first trigger and
    closes it after :meth:`close`. Call :meth:`evaluate` on the event loop.

    Usage::

        base, path = split_webhook_url("https://ci.example/hooks/retrain")
        client = UpstreamClient(base, timeout=5, connect_timeout=5, max_connections=4)
        await client.open()
        retrainer = Retrainer(
            "iris", RetrainPolicy(max_drop=0.05), trained_at=None, baseline={"accuracy": 0.91},
            webhook=client, webhook_path=path,
        )
        registry.register(retrainer.metrics.triggers)
        retrainer.observe_labels(120)
        retrainer.evaluate({"accuracy": 0.80}, drift_verdict="no_drift")  # [Trigger(reason="performance", ...)]
        await retrainer.close(loop.time() + 5)
        await client.close()
    """

    def __init__(
        self,
        model: str,
        policy: RetrainPolicy,
        *,
        trained_at: float | None,
        baseline: Mapping[str, float],
        webhook: UpstreamClient | None = None,
        webhook_path: str = "/",
        clock: Callable[[], float] = time.time,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.5,
        max_in_flight: int = 4,
    ) -> None:
        if attempts < 1 or max_in_flight < 1:
            raise ValueError("attempts and max_in_flight must be at least 1")
        self.model = model
        self.policy = policy
        self.trained_at = trained_at
        self.baseline = {k: float(v) for k, v in baseline.items() if math.isfinite(v) and v > 0}
        self.metrics = RetrainMetrics(model)
        self.last_trigger: Trigger | None = None
        self._webhook = webhook
        self._path = webhook_path
        self._clock = clock
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff
        self._max_in_flight = max_in_flight
        self._anchor = trained_at if trained_at is not None else clock()
        self._last: dict[Reason, float] = {}
        self._new_labels = 0
        self._sending: set[asyncio.Task[None]] = set()
        self._hooks: list[Callable[[Trigger], None]] = []

    def subscribe(self, hook: Callable[[Trigger], None]) -> None:
        """Call ``hook`` with every trigger that fires (not the suppressed), e.g. to raise an alert event."""
        self._hooks.append(hook)

    def observe_labels(self, n: int) -> None:
        self._new_labels += n

    def evaluate(
        self,
        performance: Mapping[str, float | None],
        drift_verdict: str | None = None,
        *,
        drifted_share: float | None = None,
        now: float | None = None,
    ) -> list[Trigger]:
        """The triggers due now, not counting suppressed ones; their deliveries start in the background."""
        now = self._clock() if now is None else now
        policy = self.policy
        due: list[tuple[Reason, dict[str, ContextValue]]] = []
        if policy.interval_seconds is not None and now - self._anchor >= policy.interval_seconds:
            self._anchor = now
            age = None if self.trained_at is None else now - self.trained_at
            due.append(("scheduled", {"model_age_seconds": age, "interval_seconds": policy.interval_seconds}))
        if policy.max_drop is not None:
            drop, worst = self._worst_drop(performance)
            if drop > policy.max_drop:
                due.append(("performance", {**worst, "max_drop": policy.max_drop}))
        if policy.on_drift and drift_verdict == "drift":
            due.append(("drift", {"drifted_share": drifted_share}))
        if policy.min_new_labels is not None and self._new_labels >= policy.min_new_labels:
            due.append(("new_data", {"new_labels": self._new_labels, "min_new_labels": policy.min_new_labels}))

        fired: list[Trigger] = []
        for reason, context in due:
            last = self._last.get(reason)
            if last is not None and now - last < policy.cooldown_seconds:
                self.metrics.series[reason, "suppressed"].inc()
                continue
            self._last[reason] = now
            fired.append(self._emit(Trigger(self.model, reason, context, now)))
        if fired:
            self._new_labels = 0
        return fired

    def _worst_drop(self, performance: Mapping[str, float | None]) -> tuple[float, dict[str, ContextValue]]:
        """The largest relative drop among the metrics with a value and a baseline, and its context."""
        worst: dict[str, ContextValue] = {}
        worst_drop = -math.inf
        for metric, base in self.baseline.items():
            value = performance.get(metric)
            if value is None or not math.isfinite(value):
                continue  # too few labels for this metric yet
            drop = (value - base) / base if metric in LOWER_IS_BETTER else (base - value) / base
            if drop > worst_drop:
                worst_drop = drop
                worst = {"metric": metric, "value": value, "baseline": base, "drop": drop}
        return worst_drop, worst

    def _emit(self, trigger: Trigger) -> Trigger:
        self.last_trigger = trigger
        for hook in self._hooks:
            try:
                hook(trigger)
            except Exception:  # one faulty subscriber must not stop the trigger or the others
                logger.exception("a retraining-trigger subscriber failed")
        if self._webhook is None:
            self._finish(trigger, "recorded", None)
        elif len(self._sending) >= self._max_in_flight:
            # A stuck webhook must not pile up tasks; the trigger is counted, not lost silently.
            self._finish(trigger, "failed", "too many deliveries in flight")
        else:
            task = asyncio.create_task(self._deliver(self._webhook, trigger))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return trigger

    def _finish(self, trigger: Trigger, outcome: str, error: str | None) -> None:
        trigger.outcome = outcome
        trigger.error = error
        self.metrics.series[trigger.reason, outcome].inc()

    async def _deliver(self, client: UpstreamClient, trigger: Trigger) -> None:
        body = orjson.dumps(trigger.body())
        headers = [("content-type", "application/json")]
        problem: str | None = "cancelled at shutdown"
        try:
            problem = await post_with_retries(
                client,
                self._path,
                headers,
                body,
                timeout=self._timeout,
                attempts=self._attempts,
                backoff=self._backoff,
            )
        finally:
            # Also on cancellation at the shutdown deadline: every trigger ends counted.
            self._finish(trigger, "sent" if problem is None else "failed", problem)

    def next_scheduled_at(self) -> float | None:
        interval = self.policy.interval_seconds
        return None if interval is None else self._anchor + interval

    def status(self, now: float | None = None) -> dict[str, Any]:
        """For ``/api/v1/performance``: model age, baseline, last trigger, next scheduled time."""
        now = self._clock() if now is None else now
        last = self.last_trigger
        next_at = self.next_scheduled_at()
        return {
            "trained_at": None if self.trained_at is None else rfc3339(self.trained_at),
            "model_age_seconds": None if self.trained_at is None else now - self.trained_at,
            "baseline": dict(self.baseline),
            "new_labels": self._new_labels,
            "next_scheduled_at": None if next_at is None else rfc3339(next_at),
            "last_trigger": None if last is None else {**last.body(), "outcome": last.outcome, "error": last.error},
        }

    async def close(self, deadline: float) -> None:
        """Let deliveries finish until ``deadline`` (a ``loop.time()``), then cancel them; they count as failed."""
        if not self._sending:
            return
        loop = asyncio.get_running_loop()
        await asyncio.wait(set(self._sending), timeout=max(0.0, deadline - loop.time()))
        for task in self._sending:
            task.cancel()
        if self._sending:
            await asyncio.wait(set(self._sending))


def model_trained_at(configured: float | None, created_at: str | None) -> float | None:
    """The configured training time, else the reference profile's ``created_at``, else None."""
    if configured is not None:
        return configured
    return None if not created_at else parse_rfc3339(created_at)
