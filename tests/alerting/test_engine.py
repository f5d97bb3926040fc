"""The engine's states, context and history, driven by an explicit clock (``now``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from sidecar.alerting.conditions import parse
from sidecar.alerting.engine import AlertEngine, Transition
from sidecar.alerting.evaluation import MIN_HISTORY
from sidecar.alerting.rules import AlertRule, Severity, default_rules
from sidecar.alerting.signals import Signals, rank_drift

T0 = 1_780_000_000.0
STEP = 60.0  # seconds between evaluations


def rule(name: str, condition: str, severity: Severity = "P3", for_seconds: float = 0.0, **kwargs: Any) -> AlertRule:
    return AlertRule(name, parse(condition), severity, for_seconds=for_seconds, **kwargs)


def engine(*rules: AlertRule, **kwargs: Any) -> AlertEngine:
    kwargs.setdefault("model", "iris")
    return AlertEngine(rules, **kwargs)


def values(**kv: float | None) -> Signals:
    return Signals(values=kv)


def moves(transitions: list[Transition]) -> list[tuple[str, str, str]]:
    return [(t.alert.name, t.previous, t.state) for t in transitions]


def state(e: AlertEngine, name: str) -> str:
    return next(a.state for a in e.alerts() if a.name == name)


def test_inactive_pending_firing_resolved() -> None:
    e = engine(rule("low_accuracy", "accuracy < 0.85", "P2", for_seconds=120))
    bad, good = values(accuracy=0.8), values(accuracy=0.9)
    assert e.evaluate(good, T0) == []
    assert state(e, "low_accuracy") == "inactive"
    assert moves(e.evaluate(bad, T0 + 60)) == [("low_accuracy", "inactive", "pending")]
    assert e.evaluate(bad, T0 + 120) == []  # 60 s of 120 s
    [fired] = e.evaluate(bad, T0 + 180)  # 120 s since it became pending
    assert moves([fired]) == [("low_accuracy", "pending", "firing")]
    assert (fired.timestamp, fired.alert.started_at, fired.alert.value) == (T0 + 180, T0 + 180, 0.8)
    assert e.evaluate(values(accuracy=0.7), T0 + 240) == []
    [alert] = e.firing()
    assert (alert.value, alert.since, alert.started_at) == (0.7, T0 + 180, T0 + 180)  # latest value, same start
    [resolved] = e.evaluate(good, T0 + 300)
    assert moves([resolved]) == [("low_accuracy", "firing", "resolved")]
    assert (resolved.alert.started_at, resolved.alert.ended_at, resolved.alert.value) == (T0 + 180, T0 + 300, 0.9)
    assert e.evaluate(good, T0 + 360) == []
    assert state(e, "low_accuracy") == "resolved"
    # Resolved behaves as inactive: the wait starts over.
    assert moves(e.evaluate(bad, T0 + 420)) == [("low_accuracy", "resolved", "pending")]
    assert e.active()[0].since == T0 + 420


def test_pending_that_stops_holding_goes_back_to_inactive() -> None:
    e = engine(rule("drift", "psi > 0.2", for_seconds=300))
    drifted = Signals(features={"psi": {"age": 0.3}})
    assert moves(e.evaluate(drifted, T0)) == [("drift", "inactive", "pending")]
    assert moves(e.evaluate(Signals(features={"psi": {"age": 0.1}}), T0 + 60)) == [("drift", "pending", "inactive")]
    assert moves(e.evaluate(drifted, T0 + 120)) == [("drift", "inactive", "pending")]
    assert e.evaluate(drifted, T0 + 419) == []
    assert moves(e.evaluate(drifted, T0 + 420)) == [("drift", "pending", "firing")]


def test_for_zero_fires_at_once() -> None:
    e = engine(rule("errors", "error_rate > 0.5", "P1"))
    assert moves(e.evaluate(values(error_rate=0.9), T0)) == [("errors", "inactive", "firing")]


@pytest.mark.parametrize(
    ("condition", "signals"),
    [
        ("accuracy < 0.85", values()),
        ("accuracy < 0.85", values(accuracy=None)),
        ("accuracy < 0.85", values(accuracy=float("nan"))),
        ("not accuracy > 0.9", values(accuracy=None)),
        ("not not accuracy < 0.9", values(accuracy=None)),
        ("accuracy != 0.9", values(accuracy=None)),
        ("accuracy < 0.85 or error_rate > 0.5", values(accuracy=None, error_rate=0.1)),
        ("accuracy < 0.85 and error_rate > 0.5", values(accuracy=None, error_rate=0.9)),
        ("not (accuracy < 0.85 or error_rate > 0.5)", values(accuracy=None, error_rate=0.1)),
        ("psi > 0.2", Signals(features={"psi": {"age": None, "income": float("nan")}})),
        ("psi > 0.2", Signals(features={"ks_pvalue": {"age": 0.5}})),
        ('not psi{feature="age"} > 0.2', Signals(features={"psi": {"income": 0.5}})),
        ("deviates(accuracy, 3)", values(accuracy=None)),
        ("not deviates(accuracy, 3)", values(accuracy=None)),
    ],
)
def test_insufficient_data_never_fires(condition: str, signals: Signals) -> None:
    e = engine(rule("x", condition))
    for i in range(10):
        assert e.evaluate(signals, T0 + i * STEP) == []
    assert state(e, "x") == "inactive"


@pytest.mark.parametrize(
    ("condition", "signals"),
    [
        # Kleene logic: a known part decides where it can, whatever the unknown part would be.
        ("accuracy < 0.85 or error_rate > 0.5", values(accuracy=None, error_rate=0.9)),
        ("not (accuracy > 0.9 and error_rate > 0.5)", values(accuracy=None, error_rate=0.1)),
        ("not accuracy > 0.9", values(accuracy=0.8)),
    ],
)
def test_known_parts_still_decide(condition: str, signals: Signals) -> None:
    e = engine(rule("x", condition))
    assert moves(e.evaluate(signals, T0)) == [("x", "inactive", "firing")]


def test_a_firing_alert_whose_data_runs_out_resolves() -> None:
    e = engine(rule("low_accuracy", "accuracy < 0.85"))
    e.evaluate(values(accuracy=0.5), T0)
    [resolved] = e.evaluate(values(accuracy=None), T0 + 60)
    assert resolved.state == "resolved"
    assert resolved.alert.value is None
    assert "not enough data" in resolved.alert.summary


def steady(rng: np.random.Generator, n: int, mean: float, sd: float) -> list[float]:
    return [float(x) for x in rng.normal(mean, sd, n)]


def test_deviates_fires_on_a_spike_after_steady_noise() -> None:
    rng = np.random.default_rng(7)
    e = engine(rule("latency_spike", "deviates(p99_latency_seconds, 4)"), baseline_window_seconds=86_400)
    series = steady(rng, 60, 0.25, 0.01)
    for i, x in enumerate(series):
        assert e.evaluate(values(p99_latency_seconds=x), T0 + i * STEP) == [], i
    [fired] = e.evaluate(values(p99_latency_seconds=0.5), T0 + 60 * STEP)
    assert fired.state == "firing"
    [term] = fired.alert.context["terms"]  # type: ignore[index]
    # Judged against the 60 previous values: the spike itself is not in its own baseline.
    assert term["points"] == 60
    assert term["mean"] == pytest.approx(np.mean(series))
    assert term["std"] == pytest.approx(np.std(series, ddof=1))
    assert term["value"] == 0.5 and term["threshold"] == 4.0 and term["result"] is True
    assert "standard deviations from its mean" in fired.alert.summary
    # Back to normal: it resolves.
    [resolved] = e.evaluate(values(p99_latency_seconds=0.25), T0 + 61 * STEP)
    assert resolved.state == "resolved"


def test_deviates_is_two_sided() -> None:
    e = engine(rule("volume_change", "deviates(volume, 3)"))
    for i, x in enumerate(steady(np.random.default_rng(1), 20, 100.0, 2.0)):
        e.evaluate(values(volume=x), T0 + i * STEP)
    assert moves(e.evaluate(values(volume=50.0), T0 + 20 * STEP)) == [("volume_change", "inactive", "firing")]


def test_deviates_needs_enough_history() -> None:
    e = engine(rule("spike", "deviates(error_rate, 2)"), rule("calm", "not deviates(error_rate, 2)"))
    for i, x in enumerate([0.01, 0.02, 0.01, 0.02][: MIN_HISTORY - 1]):
        e.evaluate(values(error_rate=x), T0 + i * STEP)
    # Four previous points: unknown, so no alert however large the value, and none from its negation.
    assert e.evaluate(values(error_rate=0.9), T0 + 4 * STEP) == []
    [term] = e.alerts()[0].context["terms"]  # type: ignore[index]
    assert (term["points"], term["result"], term["mean"]) == (4, None, None)
    assert "4 of 5 baseline points" in e.alerts()[0].summary


def test_deviates_with_zero_spread_is_false() -> None:
    e = engine(rule("spike", "deviates(error_rate, 2)"), rule("calm", "not deviates(error_rate, 2)"))
    for i in range(MIN_HISTORY):
        e.evaluate(values(error_rate=0.0), T0 + i * STEP)
    # The first value judged, after MIN_HISTORY equal ones: false, not unknown, so its negation holds.
    assert moves(e.evaluate(values(error_rate=0.9), T0 + MIN_HISTORY * STEP)) == [("calm", "inactive", "firing")]
    [term] = e.alerts()[0].context["terms"]  # type: ignore[index]
    assert (term["points"], term["std"], term["result"]) == (MIN_HISTORY, 0.0, False)


def test_deviates_history_is_pruned_to_the_baseline_window() -> None:
    e = engine(rule("spike", "deviates(error_rate, 3)"), baseline_window_seconds=600)
    rng = np.random.default_rng(3)
    for i, x in enumerate(steady(rng, 10, 0.05, 0.005)):
        e.evaluate(values(error_rate=x), T0 + i * STEP)
    # An hour later the old points are out of the window: too little history to judge.
    assert e.evaluate(values(error_rate=0.9), T0 + 3600) == []
    [term] = e.alerts()[0].context["terms"]  # type: ignore[index]
    assert term["points"] == 0


def test_deviates_on_a_feature_and_on_the_worst_feature() -> None:
    e = engine(rule("age", 'deviates(psi{feature="age"}, 3)'), rule("worst", "deviates(psi, 3)"))
    rng = np.random.default_rng(11)
    for i, (age, income) in enumerate(zip(steady(rng, 20, 0.02, 0.002), steady(rng, 20, 0.05, 0.002), strict=True)):
        e.evaluate(Signals(features={"psi": {"age": age, "income": income}}), T0 + i * STEP)
    # Age jumps but stays below income: only the age rule sees it.
    transitions = e.evaluate(Signals(features={"psi": {"age": 0.04, "income": 0.05}}), T0 + 20 * STEP)
    assert moves(transitions) == [("age", "inactive", "firing")]


def test_compound_condition_on_synthetic_series() -> None:
    e = engine(rule("drift_hurts", "psi > 0.2 and accuracy_drop > 0.05", "P2"))
    fired_at = None
    for step in range(30):
        psi = 0.05 if step < 10 else 0.3  # drift from step 10
        drop = 0.0 if step < 15 else 0.08  # accuracy falls from step 15
        transitions = e.evaluate(
            Signals(values={"accuracy_drop": drop}, features={"psi": {"age": psi, "income": 0.01}}), T0 + step * STEP
        )
        if transitions:
            assert fired_at is None
            fired_at = step
            [fired] = transitions
    assert fired_at == 15
    context = fired.alert.context
    assert context is not None
    assert context["condition"] == "psi > 0.2 and accuracy_drop > 0.05"
    assert [(t["expression"], t["feature"], t["value"], t["threshold"], t["result"]) for t in context["terms"]] == [
        ("psi > 0.2", "age", 0.3, 0.2, True),
        ("accuracy_drop > 0.05", None, 0.08, 0.05, True),
    ]
    assert fired.alert.value == 0.3


def test_or_context_shows_every_part() -> None:
    e = engine(rule("either", "error_rate > 0.5 or p99_latency_seconds > 2"))
    [fired] = e.evaluate(values(error_rate=0.1, p99_latency_seconds=3.0), T0)
    terms = fired.alert.context["terms"]  # type: ignore[index]
    assert [(t["value"], t["result"]) for t in terms] == [(0.1, False), (3.0, True)]
    assert fired.alert.value == 3.0  # the part that held


def test_max_over_features_names_the_feature() -> None:
    e = engine(
        rule("feature_drift", "psi > 0.2"),
        rule("ks", "ks_pvalue < 0.05"),
        rule("age_only", 'psi{feature="age"} > 0.2'),
    )
    signals = Signals(
        features={
            "psi": {"age": 0.05, "income": 0.31, "zip": None, "city": 0.25},
            "ks_pvalue": {"age": 0.4, "income": 0.001, "city": 0.01},
        },
        top_drift=rank_drift({"age": 0.05, "income": 0.31, "zip": None, "city": 0.25}),
    )
    transitions = e.evaluate(signals, T0)
    assert moves(transitions) == [("feature_drift", "inactive", "firing"), ("ks", "inactive", "firing")]
    drift, ks = (t.alert for t in transitions)
    assert drift.context is not None and ks.context is not None
    [term] = drift.context["terms"]
    assert (term["feature"], term["value"]) == ("income", 0.31)
    assert "for feature 'income'" in drift.summary
    [term] = ks.context["terms"]
    assert (term["feature"], term["value"]) == ("income", 0.001)  # p-values: the smallest is the worst
    assert drift.context["top_drift"] == [
        {"feature": "income", "psi": 0.31},
        {"feature": "city", "psi": 0.25},
        {"feature": "age", "psi": 0.05},
    ]


def test_rank_drift() -> None:
    psi: Mapping[str, float | None] = {"a": 0.1, "b": None, "c": 0.3, "d": 0.1, "e": float("nan")}
    assert rank_drift(psi) == (("c", 0.3), ("a", 0.1), ("d", 0.1))
    assert rank_drift(psi, limit=1) == (("c", 0.3),)


def test_event_alert_fires_once_and_resolves_by_itself() -> None:
    e = engine(*default_rules("https://runbooks.example/"))
    seen: list[Transition] = []
    e.subscribe(seen.append)
    change = e.record_event(
        "retraining_triggered", "P4", "retraining asked: drift", context={"reason": "drift"}, now=T0
    )
    assert change is not None
    assert moves([change]) == [("retraining_triggered", "inactive", "firing")]
    assert seen == [change]
    alert = change.alert
    assert (alert.severity, alert.summary, alert.started_at) == ("P4", "retraining asked: drift", T0)
    assert alert.rule.runbook == "https://runbooks.example/retraining_triggered.md"
    assert alert.context is not None and alert.context["reason"] == "drift"
    # It lives through one evaluation, so a status snapshot shows it, then resolves.
    assert e.evaluate(Signals(), T0) == []
    assert [a.name for a in e.firing()] == ["retraining_triggered"]
    [resolved] = e.evaluate(Signals(), T0 + STEP)
    assert moves([resolved]) == [("retraining_triggered", "firing", "resolved")]
    assert (resolved.alert.started_at, resolved.alert.ended_at) == (T0, T0 + STEP)
    assert e.evaluate(Signals(), T0 + 2 * STEP) == []
    assert [t.state for t in seen] == ["firing", "resolved"]


def test_event_hold_and_repeat() -> None:
    e = engine(event_hold_seconds=300)
    first = e.record_event("retraining_triggered", "P4", "drift", now=T0)
    assert first is not None
    # Not configured: the event makes its own rule, with the severity given.
    assert first.alert.rule == AlertRule("retraining_triggered", None, "P4")
    assert e.evaluate(Signals(), T0 + 60) == []
    assert e.evaluate(Signals(), T0 + 120) == []  # held for 300 s
    second = e.record_event("retraining_triggered", "P4", "performance", now=T0 + 200)
    assert second is not None
    assert (second.previous, second.state, second.alert.summary) == ("firing", "firing", "performance")
    assert e.evaluate(Signals(), T0 + 400) == []
    assert e.evaluate(Signals(), T0 + 499) == []
    assert moves(e.evaluate(Signals(), T0 + 500)) == [("retraining_triggered", "firing", "resolved")]


def test_configured_event_rule_wins_and_conditions_are_not_events(caplog: pytest.LogCaptureFixture) -> None:
    e = engine(AlertRule("retraining_triggered", None, "P2", labels={"team": "ml"}), rule("drift", "psi > 0.2"))
    change = e.record_event("retraining_triggered", "P4", "x", now=T0)
    assert change is not None
    assert change.alert.severity == "P2"
    assert change.alert.rule.labels == {"team": "ml"}
    with caplog.at_level(logging.WARNING, logger="sidecar.alerting"):
        assert e.record_event("drift", "P3", "x", now=T0) is None
    assert [r.getMessage() for r in caplog.records] == [
        "event 'drift' not raised: the alert rule of that name has a condition"
    ]
    assert [a.name for a in e.firing()] == ["retraining_triggered"]


def test_model_and_variant_filters() -> None:
    rules = (
        rule("everywhere", "error_rate > 0.5"),
        rule("fraud_only", "error_rate > 0.5", model="fraud"),
        rule("iris_challenger", "error_rate > 0.5", model="iris", variant="challenger"),
    )
    e = engine(*rules, model="iris")
    assert [a.name for a in e.alerts()] == ["everywhere"]
    assert moves(e.evaluate(values(error_rate=0.9), T0)) == [("everywhere", "inactive", "firing")]
    status = e.status_json()
    assert [(r["name"], r["applies"], r["state"]) for r in status["rules"]] == [
        ("everywhere", True, "firing"),
        ("fraud_only", False, None),
        ("iris_challenger", False, None),
    ]
    challenger = engine(*rules, model="iris", variant="challenger")
    assert [a.name for a in challenger.alerts()] == ["everywhere", "iris_challenger"]
    # An event rule filtered out for this model turns the event off here.
    filtered = engine(AlertRule("retraining_triggered", None, "P4", model="fraud"))
    assert filtered.record_event("retraining_triggered", "P4", "x", now=T0) is None
    assert filtered.alerts() == []


def test_model_version_change_is_noted_for_a_while() -> None:
    e = engine(rule("low_accuracy", "accuracy < 0.85"), version_note_seconds=3600)
    e.evaluate(Signals(values={"accuracy": 0.9}, model_version="6"), T0)
    # The first version seen is not a change.
    [fired] = e.evaluate(Signals(values={"accuracy": 0.8}, model_version="6"), T0 + 60)
    assert fired.alert.context is not None
    assert fired.alert.context["model_version"] == "6"
    assert "model_version_change" not in fired.alert.context
    e.evaluate(Signals(values={"accuracy": 0.9}, model_version="7"), T0 + 120)
    # A version missing from one evaluation's signals is not a change either.
    e.evaluate(Signals(values={"accuracy": 0.9}), T0 + 150)
    [fired] = e.evaluate(Signals(values={"accuracy": 0.8}, model_version="7"), T0 + 180)
    assert fired.alert.context is not None
    change = fired.alert.context["model_version_change"]
    assert change["from"] == "6" and change["to"] == "7"
    assert change["changed_at"] == "2026-05-28T20:28:40.000Z"
    assert change["note"] == "model version changed from 6 to 7 60s ago"
    e.evaluate(Signals(values={"accuracy": 0.9}, model_version="7"), T0 + 240)
    [fired] = e.evaluate(Signals(values={"accuracy": 0.8}, model_version="7"), T0 + 120 + 3601)
    assert fired.alert.context is not None and "model_version_change" not in fired.alert.context


def test_history_is_bounded_and_status_is_json() -> None:
    e = engine(rule("errors", "error_rate > 0.5", "P1", runbook="https://r/errors.md"), history_size=3)
    for i in range(4):
        e.evaluate(values(error_rate=0.9 if i % 2 == 0 else 0.1), T0 + i * STEP)
    assert len(e.history) == 3
    status = e.status_json()
    assert status["model"] == "iris"
    assert [(h["from"], h["to"], h["timestamp"]) for h in status["history"]] == [
        ("firing", "resolved", "2026-05-28T20:29:40.000Z"),
        ("resolved", "firing", "2026-05-28T20:28:40.000Z"),
        ("firing", "resolved", "2026-05-28T20:27:40.000Z"),
    ]
    assert status["active"] == []
    e.evaluate(values(error_rate=0.75), T0 + 4 * STEP)
    [active] = e.status_json()["active"]
    assert active == {
        "alert": "errors",
        "severity": "P1",
        "state": "firing",
        "since": "2026-05-28T20:30:40.000Z",
        "started_at": "2026-05-28T20:30:40.000Z",
        "ended_at": None,
        "value": 0.75,
        "summary": "error_rate = 0.75 (error_rate > 0.5)",
        "runbook": "https://r/errors.md",
        "labels": {},
        "context": {
            "condition": "error_rate > 0.5",
            "terms": [
                {
                    "expression": "error_rate > 0.5",
                    "signal": "error_rate",
                    "feature": None,
                    "value": 0.75,
                    "threshold": 0.5,
                    "result": True,
                }
            ],
            "top_drift": [],
            "model_version": None,
        },
    }
    [described] = e.status_json()["rules"]
    assert described == {
        "name": "errors",
        "kind": "condition",
        "condition": "error_rate > 0.5",
        "severity": "P1",
        "for_seconds": 0.0,
        "runbook": "https://r/errors.md",
        "description": "",
        "labels": {},
        "model": None,
        "variant": None,
        "applies": True,
        "state": "firing",
    }


def test_hooks_see_every_transition_and_a_failing_hook_does_not_stop_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    e = engine(rule("a", "error_rate > 0.5"), rule("b", "error_rate > 0.7"))
    seen: list[tuple[str, str]] = []

    def broken(transition: Transition) -> None:
        raise RuntimeError("boom")

    e.subscribe(broken)
    e.subscribe(lambda t: seen.append((t.alert.name, t.state)))
    with caplog.at_level(logging.ERROR, logger="sidecar.alerting"):
        e.evaluate(values(error_rate=0.9), T0)
    assert seen == [("a", "firing"), ("b", "firing")]
    assert [r.getMessage() for r in caplog.records] == [
        f"alert hook {broken!r} failed on a → firing",
        f"alert hook {broken!r} failed on b → firing",
    ]


def test_duplicate_rule_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate alert rule names: a"):
        engine(rule("a", "psi > 1"), rule("a", "mae > 1"))
    with pytest.raises(ValueError, match="baseline_window_seconds"):
        engine(baseline_window_seconds=0)


def test_default_rules_through_the_engine() -> None:
    e = engine(*default_rules(""))
    healthy = Signals(
        values={"error_rate": 0.01, "accuracy_drop": 0.0, "quality_violations": 0.0, "prediction_psi": 0.01},
        features={"psi": {"age": 0.01}},
    )
    assert e.evaluate(healthy, T0) == []
    sick = Signals(
        values={"error_rate": 0.8, "accuracy_drop": 0.2, "quality_violations": 0.3, "prediction_psi": 0.01},
        features={"psi": {"age": 0.15}},
    )
    assert {(n, s) for n, _, s in moves(e.evaluate(sick, T0 + 60))} == {
        ("serving_errors_high", "pending"),
        ("accuracy_drop", "pending"),
        ("data_quality_major", "pending"),
        ("minor_feature_drift", "pending"),
    }
    assert moves(e.evaluate(sick, T0 + 120)) == [("serving_errors_high", "pending", "firing")]
    assert [a.name for a in e.firing()] == ["serving_errors_high"]
    assert e.firing()[0].rule.runbook == "serving_errors_high.md"


def decision(word: str | None, **kv: float | None) -> Signals:
    return Signals(values=kv, texts={"experiment_decision": word})


def test_the_experiment_decision_fires_on_its_word_and_never_without_an_experiment() -> None:
    e = engine(rule("experiment_revert", 'experiment_decision == "revert"', "P2", for_seconds=120))
    # No experiment (or none analysed yet): unknown, never pending, not even under "!=".
    quiet = engine(rule("not_rolled_out", 'experiment_decision != "roll_out"'))
    for at in (T0, T0 + STEP):
        assert e.evaluate(Signals(), at) == [] and quiet.evaluate(Signals(), at) == []
    [term] = quiet.alerts()[0].context["terms"]  # type: ignore[index]
    assert (term["value"], term["threshold"], term["result"]) == (None, "roll_out", None)
    assert e.evaluate(decision("keep_running"), T0 + 2 * STEP) == []
    assert moves(e.evaluate(decision("revert"), T0 + 3 * STEP)) == [("experiment_revert", "inactive", "pending")]
    [fired] = e.evaluate(decision("revert", error_rate=0.01), T0 + 5 * STEP)
    assert moves([fired]) == [("experiment_revert", "pending", "firing")]
    # A word is no headline number; the summary shows the word seen.
    assert fired.alert.value is None
    assert fired.alert.summary == "experiment_decision = 'revert' (experiment_decision == \"revert\")"
    [term] = fired.alert.context["terms"]  # type: ignore[index]
    assert term == {
        "expression": 'experiment_decision == "revert"',
        "signal": "experiment_decision",
        "feature": None,
        "value": "revert",
        "threshold": "revert",
        "result": True,
    }
    assert moves(e.evaluate(decision("roll_out"), T0 + 6 * STEP)) == [("experiment_revert", "firing", "resolved")]
    assert moves(quiet.evaluate(decision("keep_running"), T0 + 6 * STEP)) == [("not_rolled_out", "inactive", "firing")]


def test_a_compound_condition_headlines_its_number_not_its_word() -> None:
    e = engine(rule("bad_experiment", 'experiment_decision == "revert" and error_rate > 0.1'))
    [fired] = e.evaluate(decision("revert", error_rate=0.3), T0)
    assert fired.alert.value == 0.3
    assert fired.alert.summary == (
        "experiment_decision = 'revert' (experiment_decision == \"revert\"); error_rate = 0.3 (error_rate > 0.1)"
    )


def test_the_built_in_experiment_revert_rule() -> None:
    e = engine(*default_rules(""))
    assert e.evaluate(decision("keep_running"), T0) == []
    assert moves(e.evaluate(decision("revert"), T0 + 60)) == [("experiment_revert", "inactive", "pending")]
    assert moves(e.evaluate(decision("revert"), T0 + 360)) == [("experiment_revert", "pending", "firing")]
    assert e.firing()[0].rule.runbook == "experiment_revert.md"
