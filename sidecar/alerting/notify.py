"""Delivering alerts in the background: Alertmanager's API v2 and a generic JSON webhook.

:meth:`Notifier.enqueue` is the engine's hook: synchronous, O(1), and it never
blocks. It puts firing and resolved transitions on a bounded queue (pending
ones concern nobody outside); when the queue is full the transition is
dropped and counted, as the capture queue does. :meth:`Notifier.run`, a
background task, delivers them with :func:`~sidecar.upstream.delivery.post_with_retries`.

- **Alertmanager** (``POST {base}/api/v2/alerts``): a JSON list of alerts with
  the labels ``alertname``, ``severity``, ``model`` and the rule's own, the
  annotations ``summary``, ``description``, ``runbook_url`` and ``value``,
  ``startsAt``, and ``endsAt`` once resolved. Alertmanager resolves an alert
  that is not sent again within its ``resolve_timeout`` (5 minutes by
  default), so every firing alert is re-sent every ``resend_interval``
  seconds, as Prometheus does, read from the engine so that a dropped
  "resolved" cannot keep a stale alert alive.
- **Webhook**: one POST per transition, body
  ``{alert, severity, state, previous, model, value, summary, description,
  context, runbook, labels, started_at, timestamp}``, times in RFC 3339 UTC.

Outcomes are counted in ``mlsidecar_alert_notifications_total{model,target,outcome}``
(:class:`~sidecar.alerting.metrics.NotifyMetrics`), one per alert per target.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from sidecar.alerting.engine import Alert, Transition
from sidecar.alerting.metrics import NotifyMetrics, Target
from sidecar.records import rfc3339
from sidecar.upstream.client import UpstreamClient
from sidecar.upstream.delivery import post_with_retries

__all__ = [
    "ALERTS_PATH",
    "QUEUE_SIZE",
    "RESEND_INTERVAL",
    "Notifier",
    "alertmanager_alert",
    "alertmanager_url",
    "webhook_body",
]

logger = logging.getLogger("sidecar.alerting")

ALERTS_PATH: Final = "/api/v2/alerts"
QUEUE_SIZE: Final = 1000
# Prometheus re-sends every minute (--rules.alert.resend-delay); half that leaves room for one
# failed attempt within Alertmanager's default resolve_timeout of five minutes.
RESEND_INTERVAL: Final = 30.0
MAX_BATCH: Final = 64  # alerts per Alertmanager POST
_JSON: Final = [("content-type", "application/json")]


def alertmanager_url(url: str) -> tuple[str, str]:
    """The base URL for an :class:`UpstreamClient` and the alerts path, keeping a path prefix.

    ``alertmanager_url("http://am:9093/prefix/")  # ("http://am:9093", "/prefix/api/v2/alerts")``
    """
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/") + ALERTS_PATH


def alertmanager_alert(alert: Alert, model: str, generator_url: str | None = None) -> dict[str, Any]:
    """One element of Alertmanager's ``postableAlerts``: every label and annotation is a string."""
    rule = alert.rule
    annotations = {"summary": alert.summary or rule.name, "description": describe(alert)}
    if rule.runbook:
        annotations["runbook_url"] = rule.runbook
    if alert.value is not None:
        annotations["value"] = f"{alert.value:.6g}"
    out: dict[str, Any] = {
        # The rule's labels first: the loader refuses the reserved names, and these win regardless.
        "labels": {**rule.labels, "alertname": rule.name, "severity": rule.severity, "model": model},
        "annotations": annotations,
        "startsAt": rfc3339(alert.since if alert.started_at is None else alert.started_at),
    }
    if alert.state == "resolved" and alert.ended_at is not None:
        out["endsAt"] = rfc3339(alert.ended_at)
    if generator_url:
        out["generatorURL"] = generator_url
    return out


def describe(alert: Alert) -> str:
    """The rule's description, else one written from the alert: what held, what drifts, what changed.

    An on-call engineer reads this first, often on a phone: the context that
    says where to look belongs in it, not only in the JSON API.
    """
    parts = [alert.rule.description or f"{alert.rule.name} ({alert.severity}): {alert.summary or 'firing'}."]
    context = alert.context or {}
    drifting = [item for item in context.get("top_drift", []) if isinstance(item, dict)]
    if drifting:
        shown = ", ".join(f"{item['feature']} (PSI {item['psi']:.3g})" for item in drifting[:3])
        parts.append(f"Top drifting features: {shown}.")
    change = context.get("model_version_change")
    if isinstance(change, dict) and change.get("note"):
        parts.append(f"Note: {change['note']}.")
    return " ".join(parts)


def webhook_body(transition: Transition, model: str) -> dict[str, Any]:
    alert = transition.alert
    return {
        "alert": alert.name,
        "severity": alert.severity,
        "state": alert.state,
        "previous": transition.previous,
        "model": model,
        "value": alert.value,
        "summary": alert.summary,
        "description": describe(alert),
        "context": dict(alert.context or {}),
        "runbook": alert.rule.runbook,
        "labels": dict(alert.rule.labels),
        "started_at": None if alert.started_at is None else rfc3339(alert.started_at),
        "timestamp": rfc3339(alert.since),
    }


class Notifier:
    """Sends alert transitions to Alertmanager and/or a webhook, from a background task.

    The caller owns the clients: it opens them before :meth:`run` and closes
    them after :meth:`close`. Without any target, :meth:`enqueue` does nothing.

    Usage::

        base, path = alertmanager_url("http://alertmanager:9093")
        client = UpstreamClient(base, timeout=5, connect_timeout=5, max_connections=4)
        await client.open()
        notifier = Notifier("iris", firing=engine.firing, alertmanager=client, alertmanager_path=path)
        registry.register(notifier.metrics.notifications)
        engine.subscribe(notifier.enqueue)
        task = asyncio.create_task(notifier.run())
        ...
        await notifier.close(loop.time() + 5)  # task ends too
        await client.close()
    """

    def __init__(
        self,
        model: str,
        *,
        firing: Callable[[], Iterable[Alert]],
        alertmanager: UpstreamClient | None = None,
        alertmanager_path: str = ALERTS_PATH,
        webhook: UpstreamClient | None = None,
        webhook_path: str = "/",
        generator_url: str | None = None,
        queue_size: int = QUEUE_SIZE,
        resend_interval: float = RESEND_INTERVAL,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.5,
    ) -> None:
        if queue_size < 1 or attempts < 1:
            raise ValueError("queue_size and attempts must be at least 1")
        if not resend_interval > 0:
            raise ValueError(f"resend_interval must be positive, got {resend_interval}")
        self.model = model
        self.resend_interval = resend_interval
        self._firing = firing
        self._alertmanager = alertmanager
        self._alertmanager_path = alertmanager_path
        self._webhook = webhook
        self._webhook_path = webhook_path
        self._generator_url = generator_url
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff
        self._targets: tuple[Target, ...] = (
            *(("alertmanager",) if alertmanager is not None else ()),
            *(("webhook",) if webhook is not None else ()),
        )
        self.metrics = NotifyMetrics(model, self._targets)
        # None wakes an idle run() at shutdown.
        self._queue: asyncio.Queue[Transition | None] = asyncio.Queue(queue_size)
        self._closing = False
        self._runner: asyncio.Task[Any] | None = None

    def enqueue(self, transition: Transition) -> None:
        """Queue a firing or resolved transition for delivery; drop and count it when the queue is full."""
        if transition.state not in ("firing", "resolved") or not self._targets:
            return
        if self._closing:
            self._drop(1)
            return
        try:
            self._queue.put_nowait(transition)
        except asyncio.QueueFull:
            self._drop(1)

    def _drop(self, n: int) -> None:
        for target in self._targets:
            self.metrics.series[target, "dropped"].inc(n)

    async def run(self) -> None:
        """Deliver queued transitions and re-send firing alerts, until :meth:`close` has drained the queue.

        A run() that starts after :meth:`close` was called returns at once: close() delivers by itself.
        """
        if self._closing:
            return
        self._runner = asyncio.current_task()
        await self._serve()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        resend_at = loop.time() + self.resend_interval
        while not (self._closing and self._queue.empty()):
            if self._alertmanager is not None and loop.time() >= resend_at:
                # Checked before waiting, so a busy queue cannot starve the re-sends.
                await self._resend(self._alertmanager)
                resend_at = loop.time() + self.resend_interval
            try:
                async with asyncio.timeout_at(resend_at if self._alertmanager is not None else None):
                    item = await self._queue.get()
            except TimeoutError:
                continue
            batch = [item]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            transitions = [t for t in batch if t is not None]
            if transitions:
                await self._deliver(transitions)

    async def _deliver(self, transitions: Sequence[Transition]) -> None:
        sends = []
        if self._alertmanager is not None:
            alerts = [alertmanager_alert(t.alert, self.model, self._generator_url) for t in transitions]
            sends.append(self._post("alertmanager", self._alertmanager, self._alertmanager_path, alerts, len(alerts)))
        if self._webhook is not None:
            sends.append(self._post_each(self._webhook, transitions))
        await asyncio.gather(*sends)

    async def _post_each(self, client: UpstreamClient, transitions: Sequence[Transition]) -> None:
        for transition in transitions:
            await self._post("webhook", client, self._webhook_path, webhook_body(transition, self.model), 1)

    async def _resend(self, client: UpstreamClient) -> None:
        alerts = [alertmanager_alert(a, self.model, self._generator_url) for a in self._firing() if a.state == "firing"]
        for start in range(0, len(alerts), MAX_BATCH):
            chunk = alerts[start : start + MAX_BATCH]
            await self._post("alertmanager", client, self._alertmanager_path, chunk, len(chunk))

    async def _post(self, target: Target, client: UpstreamClient, path: str, payload: Any, n: int) -> None:
        problem: str | None = "cancelled at shutdown"
        try:
            try:
                # Context comes from the wiring and may hold numpy numbers or other odd values:
                # they are sent as numbers or text rather than stop the notifier.
                body = orjson.dumps(payload, default=str, option=orjson.OPT_SERIALIZE_NUMPY)
            except TypeError as exc:  # orjson.JSONEncodeError is one
                problem = f"cannot encode the alert as JSON: {exc}"
            else:
                problem = await post_with_retries(
                    client,
                    path,
                    _JSON,
                    body,
                    timeout=self._timeout,
                    attempts=self._attempts,
                    backoff=self._backoff,
                )
        finally:
            # Also on cancellation at the shutdown deadline: every notification ends counted.
            self.metrics.series[target, "delivered" if problem is None else "failed"].inc(n)
            if problem is not None:
                logger.warning("alert notification to %s failed: %s", target, problem)

    async def close(self, deadline: float) -> None:
        """Deliver what is queued until ``deadline`` (a ``loop.time()``), then cancel; the rest counts as dropped.

        A running :meth:`run` drains the queue and returns (it is cancelled at
        the deadline); if none runs, because it was never started or was
        cancelled, close() drains the queue itself. Either way, transitions
        enqueued after this call are dropped and counted.
        """
        self._closing = True
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            pass  # run() is not idle, and checks _closing after each batch
        runner = self._runner
        if runner is None or runner.done():
            runner = asyncio.ensure_future(self._serve())
        loop = asyncio.get_running_loop()
        await asyncio.wait({runner}, timeout=max(0.0, deadline - loop.time()))
        if not runner.done():
            runner.cancel()
            await asyncio.wait({runner})
        left = 0
        while not self._queue.empty():
            left += self._queue.get_nowait() is not None
        self._drop(left)
