"""Alerting wired into the sidecar: the evaluation loop and the two hooks back into serving.

Every ``SIDECAR_EVAL_INTERVAL_SECONDS`` the :class:`AlertRunner` builds the
signals from the monitors' latest snapshots and lets the engine judge every
rule. Transitions go to the notifier (a bounded queue; delivery never blocks
this loop), and to the two narrow hooks docs/architecture.md allows back into the
request path:

- **trigger sampling**: while an alert fires, capture runs at 100% (re-armed
  at every evaluation, so it holds for ``SIDECAR_TRIGGER_HOLD_SECONDS`` after
  the alert ends), so the traffic around an incident is all on record;
- **auto-fallback**: with ``SIDECAR_AUTO_FALLBACK=true``, a P1 alert on
  ``error_rate`` that starts firing sets ``use_fallback_model``. Only an
  operator clears it: routing back by itself when the fallback's own traffic
  looks healthy would flap between the two models.

Retraining triggers become ``retraining_triggered`` event alerts (P4).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sidecar.alerting import AlertEngine, AlertRule, Transition
from sidecar.alerting.conditions import leaves
from sidecar.alerting.source import SignalSource
from sidecar.labels.retraining import Trigger
from sidecar.sampling import Sampler
from sidecar.serving.flags import Flags

__all__ = ["RETRAINING_EVENT", "AlertRunner", "is_serving_failure"]

logger = logging.getLogger("sidecar.alerting.runner")

RETRAINING_EVENT = "retraining_triggered"


def is_serving_failure(rule: AlertRule) -> bool:
    """A P1 rule about serving errors: the kind of alert auto-fallback answers."""
    if rule.severity != "P1" or rule.condition is None:
        return False
    return any(leaf.signal.name == "error_rate" for leaf in leaves(rule.condition))


class AlertRunner:
    """Evaluates the alert rules on a schedule and applies the hooks.

    Usage::

        runner = AlertRunner(engine, source, sampler=capture.sampler, flags=flags, auto_fallback=True)
        retrainer.subscribe(runner.retraining_triggered)
        task = asyncio.create_task(runner.run(interval=15))
    """

    def __init__(
        self,
        engine: AlertEngine,
        source: SignalSource,
        *,
        sampler: Sampler,
        flags: Flags,
        auto_fallback: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.source = source
        self.sampler = sampler
        self.flags = flags
        self.auto_fallback = auto_fallback
        self._clock = clock
        engine.subscribe(self._on_transition)

    def evaluate(self, now: float | None = None) -> list[Transition]:
        now = self._clock() if now is None else now
        transitions = self.engine.evaluate(self.source.build(now), now)
        for alert in self.engine.firing():
            self.sampler.activate(f"alert:{alert.name}")
        return transitions

    def retraining_triggered(self, trigger: Trigger) -> None:
        """A :class:`~sidecar.labels.retraining.Retrainer` subscriber: raise the informational P4 event."""
        self.engine.record_event(
            RETRAINING_EVENT,
            "P4",
            f"retraining triggered ({trigger.reason})",
            context={"reason": trigger.reason, **trigger.context},
            now=trigger.timestamp,
        )

    def _on_transition(self, transition: Transition) -> None:
        alert = transition.alert
        if self.auto_fallback and transition.state == "firing" and is_serving_failure(alert.rule):
            if not self.flags.use_fallback_model:
                self.flags.set("use_fallback_model", True, source=f"alert:{alert.name}", reason=alert.summary)

    async def run(self, interval: float) -> None:
        """Evaluate every ``interval`` seconds until cancelled; a failed evaluation is logged and skipped."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.evaluate()
            except Exception:
                logger.exception("alert evaluation failed; alert states are unchanged until the next one")
