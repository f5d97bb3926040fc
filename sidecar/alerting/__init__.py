"""Alerting: rules judged on the monitors' signals, alert states, and their delivery.

The pieces, by concept:

- :mod:`.signals`: :class:`Signals`, the plain values one evaluation judges;
- :mod:`.conditions`: the condition language, parsed into a frozen tree;
- :mod:`.evaluation`: a condition judged in three-valued logic, so missing
  data never fires;
- :mod:`.rules`: :class:`AlertRule`, the YAML rules file and the defaults;
- :mod:`.engine`: :class:`AlertEngine`, the states, transitions and history;
- :mod:`.metrics`: the ``mlsidecar_alert_*`` metrics;
- :mod:`.notify`: :class:`Notifier`, delivery to Alertmanager and a webhook.

Only :mod:`.notify` talks HTTP; everything else takes plain values and
returns plain values, so it is tested without a server. This package's
facade leaves :mod:`.notify` out, so importing it loads no HTTP client; the
wiring (:mod:`.runner`, :mod:`.source`, :mod:`sidecar.assembly`) imports
those modules by their own names.

Usage::

    engine = AlertEngine(load_rules("alerts.yaml"), model="iris", baseline_window_seconds=86400)
    engine.subscribe(notifier.enqueue)
    engine.evaluate(Signals(values={"accuracy": 0.8}), now=time.time())
"""

from __future__ import annotations

from sidecar.alerting.conditions import Condition, ConditionError, parse
from sidecar.alerting.engine import STATES, Alert, AlertEngine, Hook, State, Transition
from sidecar.alerting.evaluation import MIN_HISTORY, Term, Truth
from sidecar.alerting.metrics import AlertMetrics, NotifyMetrics
from sidecar.alerting.rules import (
    SEVERITIES,
    AlertRule,
    AlertRulesError,
    Severity,
    default_rules,
    load_rules,
    parse_duration,
    rules_from_mapping,
)
from sidecar.alerting.signals import FEATURE_SIGNALS, SCALAR_SIGNALS, SIGNALS, TEXT_SIGNALS, Signals, rank_drift

__all__ = [
    "Alert",
    "AlertEngine",
    "AlertMetrics",
    "AlertRule",
    "AlertRulesError",
    "Condition",
    "ConditionError",
    "FEATURE_SIGNALS",
    "Hook",
    "MIN_HISTORY",
    "NotifyMetrics",
    "SCALAR_SIGNALS",
    "SEVERITIES",
    "SIGNALS",
    "STATES",
    "Severity",
    "Signals",
    "State",
    "TEXT_SIGNALS",
    "Term",
    "Transition",
    "Truth",
    "default_rules",
    "load_rules",
    "parse",
    "parse_duration",
    "rank_drift",
    "rules_from_mapping",
]
