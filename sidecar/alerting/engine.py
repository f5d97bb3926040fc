"""The alert engine: every rule's state, moved on by each evaluation's signals.

States, as Prometheus has them::

    inactive ──true──► pending ──true for `for` seconds──► firing ──not true──► resolved
       ▲                  │                                                   │
       └───not true───────┘            (resolved behaves as inactive) ◄───────┘

A rule with ``for: 0`` goes from inactive straight to firing. "Not true"
includes unknown (see :mod:`sidecar.alerting.evaluation`): an alert whose
signal runs out of data resolves, as a Prometheus alert does when its series
vanishes, rather than firing on for ever on evidence that is gone.

Event alerts (rules without a condition, e.g. ``retraining_triggered``) fire
when :meth:`AlertEngine.record_event` is called and resolve at the second
:meth:`AlertEngine.evaluate` after that (and no earlier than
``event_hold_seconds``): so each event is delivered once as firing and once as
resolved, and shows as active in at least one status snapshot whether the
wiring records it before or after evaluating.

Every change of state is a :class:`Transition`. The engine keeps the last
``history_size`` of them, and calls each subscribed hook with each one, after
the whole evaluation, so a hook sees a consistent engine.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from sidecar.alerting.conditions import Deviates, SignalRef, leaves
from sidecar.alerting.evaluation import Term, judge, resolve
from sidecar.alerting.rules import AlertRule, Severity
from sidecar.alerting.signals import Signals
from sidecar.records import rfc3339

__all__ = [
    "HISTORY_SIZE",
    "MAX_BASELINE_POINTS",
    "STATES",
    "TOP_DRIFT",
    "Alert",
    "AlertEngine",
    "Hook",
    "State",
    "Transition",
]

logger = logging.getLogger("sidecar.alerting")

State = Literal["inactive", "pending", "firing", "resolved"]
STATES: Final[tuple[State, ...]] = get_args(State)
HISTORY_SIZE: Final = 200
# Per signal a `deviates` reads: at one evaluation every 10 s, a day's history.
MAX_BASELINE_POINTS: Final = 10_000
TOP_DRIFT: Final = 5  # drifted features shown in an alert's context


@dataclass(frozen=True, slots=True)
class Alert:
    """A rule's alert as of one moment.

    ``since`` is when it entered ``state``; ``started_at`` when it last began
    firing and ``ended_at`` when that ended (Alertmanager's ``startsAt`` and
    ``endsAt``); ``value`` the headline value, the first part of the
    condition that held.
    """

    rule: AlertRule
    state: State
    since: float
    started_at: float | None = None
    ended_at: float | None = None
    value: float | None = None
    summary: str = ""
    context: Mapping[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def severity(self) -> Severity:
        return self.rule.severity

    def as_dict(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "severity": self.severity,
            "state": self.state,
            "since": rfc3339(self.since),
            "started_at": None if self.started_at is None else rfc3339(self.started_at),
            "ended_at": None if self.ended_at is None else rfc3339(self.ended_at),
            "value": self.value,
            "summary": self.summary,
            "runbook": self.rule.runbook,
            "labels": dict(self.rule.labels),
            "context": dict(self.context or {}),
        }


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of state: ``alert`` is the alert as it is after it, at ``alert.since``."""

    previous: State
    alert: Alert

    @property
    def state(self) -> State:
        return self.alert.state

    @property
    def timestamp(self) -> float:
        return self.alert.since

    def as_dict(self) -> dict[str, Any]:
        alert = self.alert
        return {
            "alert": alert.name,
            "severity": alert.severity,
            "from": self.previous,
            "to": alert.state,
            "timestamp": rfc3339(alert.since),
            "value": alert.value,
            "summary": alert.summary,
        }


Hook = Callable[[Transition], None]


class AlertEngine:
    """Judges the rules that apply to this sidecar's model every evaluation.

    Usage::

        engine = AlertEngine(default_rules(RUNBOOKS), model="iris", baseline_window_seconds=86400)
        engine.subscribe(notifier.enqueue)
        transitions = engine.evaluate(Signals(values={"error_rate": 0.7}), now=time.time())
        engine.record_event("retraining_triggered", "P4", "drift: 40% of features drifted", now=time.time())
        engine.status_json()  # for GET /api/v1/alerts
    """

    def __init__(
        self,
        rules: Iterable[AlertRule],
        *,
        model: str,
        variant: str | None = None,
        baseline_window_seconds: float = 86_400.0,
        history_size: int = HISTORY_SIZE,
        event_hold_seconds: float = 0.0,
        version_note_seconds: float = 3600.0,
    ) -> None:
        self.rules = tuple(rules)
        names = [rule.name for rule in self.rules]
        if duplicates := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"duplicate alert rule names: {', '.join(duplicates)}")
        if not baseline_window_seconds > 0:
            raise ValueError(f"baseline_window_seconds must be positive, got {baseline_window_seconds}")
        self.model = model
        self.variant = variant
        self.baseline_window_seconds = baseline_window_seconds
        self.event_hold_seconds = event_hold_seconds
        self.version_note_seconds = version_note_seconds
        self.history: deque[Transition] = deque(maxlen=history_size)
        self._hooks: list[Hook] = []
        # Insertion-ordered: status and metrics list the rules as the file does.
        self._alerts: dict[str, Alert] = {
            rule.name: Alert(rule, "inactive", 0.0) for rule in self.rules if rule.applies_to(model, variant)
        }
        self._pending_since: dict[str, float] = {}
        self._events_seen: set[str] = set()  # event alerts that have lived through one evaluation
        self._baseline: dict[SignalRef, deque[tuple[float, float]]] = {
            leaf.signal: deque(maxlen=MAX_BASELINE_POINTS)
            for alert in self._alerts.values()
            if alert.rule.condition is not None
            for leaf in leaves(alert.rule.condition)
            if isinstance(leaf, Deviates)
        }
        self._version: str | None = None
        self._previous_version: str | None = None
        self._version_changed_at: float | None = None

    def subscribe(self, hook: Hook) -> None:
        """Call ``hook`` with every transition, on the caller's thread, in order; it must not block."""
        self._hooks.append(hook)

    def alerts(self) -> list[Alert]:
        """The current alert of every rule that applies here, inactive ones included."""
        return list(self._alerts.values())

    def active(self) -> list[Alert]:
        """Pending and firing alerts."""
        return [a for a in self._alerts.values() if a.state in ("pending", "firing")]

    def firing(self) -> list[Alert]:
        return [a for a in self._alerts.values() if a.state == "firing"]

    def evaluate(self, signals: Signals, now: float) -> list[Transition]:
        """Judge every rule against ``signals`` at ``now`` (Unix seconds); return the transitions, in rule order."""
        self._observe_version(signals.model_version, now)
        history = self._prune(now)
        transitions: list[Transition] = []
        for name, alert in self._alerts.items():
            rule = alert.rule
            if rule.condition is None:
                after = self._age_event(alert, now)
            else:
                truth, terms = judge(rule.condition, signals, history)
                after = self._step(alert, truth is True, terms, signals, now)
            self._alerts[name] = after
            if after.state != alert.state:
                transitions.append(Transition(alert.state, after))
        # Recorded after every rule was judged: each value is judged against the ones before it only.
        for ref, points in self._baseline.items():
            value, _ = resolve(ref, signals)
            if value is not None:
                points.append((now, value))
        self._publish(transitions)
        return transitions

    def record_event(
        self,
        name: str,
        severity: Severity,
        summary: str,
        *,
        context: Mapping[str, Any] | None = None,
        now: float,
    ) -> Transition | None:
        """Fire the event alert ``name``; it resolves by itself (see the module docstring).

        A configured event rule of that name gives its severity, runbook and
        labels, which win over ``severity``: the operator's file overrides the
        code's default. An unconfigured name becomes an event rule here, so the
        sidecar's own events (names from code, never from payloads) alert even
        with a rules file that does not list them. None, and no alert, when the
        configured rule does not apply to this model (an operator's way to turn
        the event off) or is a condition rule (a clash of names, logged).
        """
        configured = next((rule for rule in self.rules if rule.name == name), None)
        if configured is not None and configured.condition is not None:
            # The operator's file must not be able to crash the evaluator through a name.
            logger.warning("event %r not raised: the alert rule of that name has a condition", name)
            return None
        alert = self._alerts.get(name)
        if alert is None:
            if configured is not None:
                return None  # filtered out by model or variant
            alert = Alert(AlertRule(name, None, severity), "inactive", now)
        firing = Alert(
            alert.rule,
            "firing",
            now,
            started_at=now,
            summary=summary,
            context={**(context or {}), **self._version_context(now)},
        )
        # A second event while the first is still firing fires again (firing → firing): it is news.
        change = Transition(alert.state, firing)
        self._alerts[name] = firing
        self._events_seen.discard(name)
        self._publish([change])
        return change

    def _step(self, alert: Alert, holds: bool, terms: Sequence[Term], signals: Signals, now: float) -> Alert:
        """The rule's alert after one evaluation; it shows the latest values whether or not its state changed."""
        rule = alert.rule
        value, summary, context = _headline(terms), _summary(terms), self._context(rule, terms, signals, now)
        state = alert.state
        if not holds:
            self._pending_since.pop(rule.name, None)
            if state == "pending":
                return Alert(rule, "inactive", now, None, None, value, summary, context)
            if state == "firing":
                return Alert(rule, "resolved", now, alert.started_at, now, value, summary, context)
            return Alert(rule, state, alert.since, alert.started_at, alert.ended_at, value, summary, context)
        if state == "firing":
            return Alert(rule, "firing", alert.since, alert.started_at, None, value, summary, context)
        pending_since = self._pending_since.setdefault(rule.name, now)
        if now - pending_since >= rule.for_seconds:
            return Alert(rule, "firing", now, now, None, value, summary, context)
        return Alert(rule, "pending", pending_since, None, None, value, summary, context)

    def _age_event(self, alert: Alert, now: float) -> Alert:
        name = alert.name
        if alert.state != "firing":
            return alert
        if name not in self._events_seen or now - alert.since < self.event_hold_seconds:
            self._events_seen.add(name)
            return alert
        self._events_seen.discard(name)
        return Alert(alert.rule, "resolved", now, alert.started_at, now, None, alert.summary, alert.context)

    def _prune(self, now: float) -> dict[SignalRef, list[float]]:
        horizon = now - self.baseline_window_seconds
        out: dict[SignalRef, list[float]] = {}
        for ref, points in self._baseline.items():
            while points and points[0][0] < horizon:
                points.popleft()
            out[ref] = [value for _, value in points]
        return out

    def _observe_version(self, version: str | None, now: float) -> None:
        # The first version seen is not a change: the sidecar just started.
        if version is None or version == self._version:
            return
        if self._version is not None:
            self._previous_version = self._version
            self._version_changed_at = now
        self._version = version

    def _version_context(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {"model_version": self._version}
        changed = self._version_changed_at
        if changed is not None and now - changed <= self.version_note_seconds:
            # A drop in accuracy right after a deploy is often the deploy: say so in the alert.
            out["model_version_change"] = {
                "from": self._previous_version,
                "to": self._version,
                "changed_at": rfc3339(changed),
                "note": f"model version changed from {self._previous_version} to {self._version} "
                f"{now - changed:.0f}s ago",
            }
        return out

    def _context(self, rule: AlertRule, terms: Sequence[Term], signals: Signals, now: float) -> dict[str, Any]:
        return {
            "condition": str(rule.condition),
            "terms": [term.as_dict() for term in terms],
            "top_drift": [{"feature": f, "psi": v} for f, v in signals.top_drift[:TOP_DRIFT]],
            **self._version_context(now),
        }

    def _publish(self, transitions: Sequence[Transition]) -> None:
        self.history.extend(transitions)
        for change in transitions:
            for hook in self._hooks:
                try:
                    hook(change)
                except Exception:
                    # Fail open: a broken hook must not stop the others or the evaluation.
                    logger.exception("alert hook %r failed on %s → %s", hook, change.alert.name, change.state)

    def status_json(self) -> dict[str, Any]:
        """Rules, active alerts and recent transitions (newest first), as plain JSON values."""
        return {
            "model": self.model,
            "variant": self.variant,
            "baseline_window_seconds": self.baseline_window_seconds,
            "rules": [self._rule_json(rule) for rule in self._all_rules()],
            "active": [alert.as_dict() for alert in self.active()],
            "history": [change.as_dict() for change in reversed(self.history)],
        }

    def _all_rules(self) -> list[AlertRule]:
        # Configured rules, then event rules first recorded at run time.
        configured = {rule.name for rule in self.rules}
        return [*self.rules, *(a.rule for a in self._alerts.values() if a.name not in configured)]

    def _rule_json(self, rule: AlertRule) -> dict[str, Any]:
        alert = self._alerts.get(rule.name)
        return {
            "name": rule.name,
            "kind": "event" if rule.condition is None else "condition",
            "condition": None if rule.condition is None else str(rule.condition),
            "severity": rule.severity,
            "for_seconds": rule.for_seconds,
            "runbook": rule.runbook,
            "description": rule.description,
            "labels": dict(rule.labels),
            "model": rule.model,
            "variant": rule.variant,
            "applies": alert is not None,
            "state": None if alert is None else alert.state,
        }


def _headline(terms: Sequence[Term]) -> float | None:
    """The number of the first part that held, else of the first part with a number; a word is no headline."""
    numbers = [(term.result, term.value) for term in terms if isinstance(term.value, float)]
    for result, value in numbers:
        if result:
            return value
    return numbers[0][1] if numbers else None


def _summary(terms: Sequence[Term]) -> str:
    return "; ".join(term.describe() for term in terms)
