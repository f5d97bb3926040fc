"""The rules file: the example alert rules format loads unmodified, and every bad file says what and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.alerting.conditions import parse
from sidecar.alerting.rules import (
    RUNBOOKS,
    AlertRule,
    AlertRulesError,
    default_rules,
    load_rules,
    parse_duration,
    rules_from_mapping,
)
from sidecar.alerting.signals import TEXT_SIGNALS
from sidecar.exceptions import ProblemsError
from sidecar.experiments.decision import DECISIONS

GUIDE = """\
alerts:
  - name: model_accuracy_drop
    condition: accuracy < 0.85
    severity: P2
    runbook: link_to_runbook

  - name: feature_drift
    condition: psi > 0.2
    severity: P3
    runbook: link_to_runbook
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(AlertRulesError) as caught:
        load_rules(path)
    assert isinstance(caught.value, ProblemsError)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return [p.replace(str(path), "FILE") for p in caught.value.problems]


def test_the_guides_file_loads_unmodified(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, GUIDE))
    assert rules == (
        AlertRule("model_accuracy_drop", parse("accuracy < 0.85"), "P2", runbook="link_to_runbook"),
        AlertRule("feature_drift", parse("psi > 0.2"), "P3", runbook="link_to_runbook"),
    )
    assert all(rule.for_seconds == 0 and not rule.is_event for rule in rules)


def test_every_optional_key(tmp_path: Path) -> None:
    [rule, event] = load_rules(
        write(
            tmp_path,
            """\
alerts:
  - name: fraud_drift
    condition: 'psi{feature="amount"} > 0.3 and accuracy_drop > 0.05'
    severity: P1
    runbook: https://wiki.example/fraud.md
    for: 1h30m
    labels: {team: fraud, tier: "1"}
    description: Amount drifted and accuracy fell.
    model: fraud
    variant: challenger
  - name: retraining_triggered
    event: true
    severity: P3
    labels: {team: ml}
""",
        )
    )
    assert rule == AlertRule(
        "fraud_drift",
        parse('psi{feature="amount"} > 0.3 and accuracy_drop > 0.05'),
        "P1",
        runbook="https://wiki.example/fraud.md",
        for_seconds=5400.0,
        labels={"team": "fraud", "tier": "1"},
        description="Amount drifted and accuracy fell.",
        model="fraud",
        variant="challenger",
    )
    assert rule.applies_to("fraud", "challenger")
    assert not rule.applies_to("fraud", None)
    assert not rule.applies_to("iris", "challenger")
    assert event == AlertRule("retraining_triggered", None, "P3", labels={"team": "ml"})
    assert event.is_event and event.applies_to("anything")


def test_an_empty_list_is_no_rules(tmp_path: Path) -> None:
    assert load_rules(write(tmp_path, "alerts: []\n")) == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "alerts:\n  - {name: x, condition: psi > 0.2, severity: P5}\n",
            ["FILE: rule 'x': 'severity' is 'P5'; expected one of P1, P2, P3, P4"],
        ),
        (
            "alerts:\n  - {name: x, condition: psi > 0.2, severity: p2}\n",
            ["FILE: rule 'x': 'severity' is 'p2'; expected one of P1, P2, P3, P4"],
        ),
        (
            "alerts:\n  - {name: x, condition: psi > 0.2}\n",
            ["FILE: rule 'x': 'severity' is None; expected one of P1, P2, P3, P4"],
        ),
        (
            "alerts:\n  - {name: x, condition: accurcy < 0.8, severity: P3}\n",
            [
                "FILE: rule 'x': condition 'accurcy < 0.8': unknown signal 'accurcy' at position 0; "
                "did you mean 'accuracy'?"
            ],
        ),
        (
            "alerts:\n  - {name: x, condition: psi >> 0.2, severity: P3}\n",
            ["FILE: rule 'x': condition 'psi >> 0.2': unexpected '>' at position 5; expected a number"],
        ),
        (
            "alerts:\n  - {name: x, severity: P3}\n",
            ["FILE: rule 'x': 'condition' is None; expected a condition such as psi > 0.2"],
        ),
        (
            "alerts:\n"
            "  - {name: x, condition: psi > 0.2, severity: P3}\n"
            "  - {name: y, condition: psi > 0.2, severity: P3}\n"
            "  - {name: x, condition: psi > 0.3, severity: P2}\n",
            ["FILE: rule 'x': duplicate name; alerts[0] has it too"],
        ),
        (
            "alerts:\n  - {name: x, condition: psi > 0.2, severity: P3, runbok: http://r}\n",
            [
                "FILE: rule 'x': unknown key 'runbok'; expected one of: name, condition, severity, runbook, for, "
                "labels, description, model, variant, event"
            ],
        ),
        (
            "alerts:\n  - {name: x, condition: psi > 0.2, severity: P3, for: 5 minutes}\n",
            ["FILE: rule 'x': 'for': '5 minutes' is not a duration; expected seconds or e.g. 30s, 5m, 1h30m, 7d, 2w"],
        ),
        (
            "alerts:\n  - {name: x, condition: psi > 0.2, severity: P3, for: -5}\n",
            ["FILE: rule 'x': 'for': -5 is not a duration of zero seconds or more"],
        ),
        (
            "alerts:\n  - {condition: psi > 0.2, severity: P3}\n",
            ["FILE: alerts[0]: 'name' is None; expected letters, digits and _ . : -"],
        ),
        (
            "alerts:\n  - {name: bad name, condition: psi > 0.2, severity: P3}\n",
            ["FILE: rule 'bad name': 'name' is 'bad name'; expected letters, digits and _ . : -"],
        ),
        (
            "alerts:\n  - {name: x, condition: psi > 0.2, severity: P3, labels: {severity: low, 1x: a, team: 7}}\n",
            [
                "FILE: rule 'x': label 'severity' is set by the sidecar; choose another name",
                "FILE: rule 'x': label name '1x' is not a valid Prometheus label name",
                "FILE: rule 'x': label 'team' is 7; expected a string (quote it)",
            ],
        ),
        (
            "alerts:\n  - {name: x, condition: psi > 0.2, severity: P3, runbook: 5, model: [a]}\n",
            [
                "FILE: rule 'x': 'runbook' is 5; expected a string",
                "FILE: rule 'x': 'model' is ['a']; expected a string",
            ],
        ),
        (
            "alerts:\n  - {name: x, event: true, condition: psi > 0.2, severity: P4, for: 1m}\n",
            [
                "FILE: rule 'x': an event alert has no 'condition'; remove one of 'event' and 'condition'",
                "FILE: rule 'x': 'for' does not apply to an event alert",
            ],
        ),
        (
            "alerts:\n  - just a string\n",
            ["FILE: alerts[0]: a rule must be a mapping with name, condition and severity"],
        ),
        ("alerts: {x: 1}\n", ["FILE: 'alerts' must be a list of rules"]),
        ("rules: []\n", ["FILE: expected a mapping with the key 'alerts', a list of rules"]),
        ("", ["FILE: expected a mapping with the key 'alerts', a list of rules"]),
        ("alerts: []\nextra: 1\n", ["FILE: unknown key 'extra'; expected 'alerts'"]),
    ],
)
def test_bad_rule_files(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert problems(tmp_path, text) == expected


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
alerts:
  - name: a
    condition: psi > 0.2
    severity: P9
  - name: b
    condition: accuracy <
    severity: P2
  - condition: psi > 0.1
    severity: P3
    for: soon
""",
    )
    assert found == [
        "FILE: rule 'a': 'severity' is 'P9'; expected one of P1, P2, P3, P4",
        "FILE: rule 'b': condition 'accuracy <': unexpected end of condition at position 10; expected a number",
        "FILE: alerts[2]: 'name' is None; expected letters, digits and _ . : -",
        "FILE: alerts[2]: 'for': 'soon' is not a duration; expected seconds or e.g. 30s, 5m, 1h30m, 7d, 2w",
    ]


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(AlertRulesError, match="cannot read alert rules .*missing.yaml"):
        load_rules(tmp_path / "missing.yaml")
    bad = write(tmp_path, "alerts:\n  - name: [unclosed\n")
    with pytest.raises(AlertRulesError, match=r"is not valid YAML: .* at line 3, column 1"):
        load_rules(bad)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(AlertRulesError, match="is not UTF-8 text"):
        load_rules(binary)


def test_safe_load_builds_no_objects(tmp_path: Path) -> None:
    text = "alerts: !!python/object/apply:os.system ['true']\n"
    with pytest.raises(AlertRulesError, match="is not valid YAML"):
        load_rules(write(tmp_path, text))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0, 0.0), (45, 45.0), (2.5, 2.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1d", 86400.0)]
    + [("1h30m", 5400.0), ("1.5m", 90.0), (" 10m ", 600.0), ("5", 5.0), ("2w", 1_209_600.0)],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", [True, None, "", "5 m", "m", "5y", "-1s", -1, float("inf"), float("nan"), [1], "nan"])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_rules_from_mapping_names_its_source() -> None:
    with pytest.raises(AlertRulesError, match=r"^inline: rule 'x': 'severity'"):
        rules_from_mapping({"alerts": [{"name": "x", "condition": "psi > 1", "severity": "P0"}]}, source="inline")


def test_default_rules() -> None:
    rules = {rule.name: rule for rule in default_rules("https://runbooks.example/")}
    assert {
        name: (rule.severity, None if rule.condition is None else str(rule.condition)) for name, rule in rules.items()
    } == {
        "serving_errors_high": ("P1", "error_rate > 0.5"),
        "accuracy_drop": ("P2", "accuracy_drop > 0.1"),
        "data_quality_major": ("P2", "quality_violations > 0.1"),
        "experiment_revert": ("P2", 'experiment_decision == "revert"'),
        "feature_drift": ("P3", "psi > 0.2"),
        "prediction_drift": ("P3", "prediction_psi > 0.2"),
        "minor_feature_drift": ("P4", "psi > 0.1 and psi <= 0.2"),
        "retraining_triggered": ("P4", None),
    }
    assert rules["feature_drift"].runbook == "https://runbooks.example/feature_drift.md"
    assert all(rule.description for rule in rules.values())
    # deploy/prometheus/alerting_rules.yml mirrors these waits.
    assert {name: rule.for_seconds for name, rule in rules.items()} == {
        "serving_errors_high": 60.0,
        "accuracy_drop": 600.0,
        "data_quality_major": 300.0,
        "experiment_revert": 300.0,
        "feature_drift": 900.0,
        "prediction_drift": 900.0,
        "minor_feature_drift": 1800.0,
        "retraining_triggered": 0.0,
    }
    assert rules["retraining_triggered"].is_event


def test_the_decision_signal_takes_the_experiments_decisions() -> None:
    # signals.py imports nothing of the sidecar, so it writes the list out; this holds the two equal.
    assert TEXT_SIGNALS["experiment_decision"] == DECISIONS


def test_default_runbooks_are_relative_to_the_docs_without_a_base() -> None:
    runbooks = {rule.name: rule.runbook for rule in default_rules()}
    assert runbooks["feature_drift"] == "deploy/runbooks/feature_drift.md"
    assert all(link == f"{RUNBOOKS}/{name}.md" for name, link in runbooks.items())
    # The links name files that exist, from the root of the repository's docs.
    root = Path(__file__).parent.parent.parent
    assert all((root / link).is_file() for link in runbooks.values() if link is not None)


@pytest.mark.parametrize(
    ("base", "link"),
    [
        ("https://docs.example.com/runbooks", "https://docs.example.com/runbooks/feature_drift.md"),
        ("https://docs.example.com/runbooks/", "https://docs.example.com/runbooks/feature_drift.md"),
        ("https://docs.example.com/runbooks//", "https://docs.example.com/runbooks/feature_drift.md"),
        ("/", "/feature_drift.md"),
        ("", "feature_drift.md"),
    ],
)
def test_a_runbook_base_is_joined_with_exactly_one_slash(base: str, link: str) -> None:
    rules = {rule.name: rule for rule in default_rules(base)}
    assert rules["feature_drift"].runbook == link
