"""Alert rules: the YAML file named by ``SIDECAR_ALERT_RULES``, and the built-in defaults.

Format::

    alerts:
      - name: model_accuracy_drop
        condition: accuracy < 0.85
        severity: P2
        runbook: https://wiki.example/runbooks/accuracy.md
        for: 10m
        labels: {team: ml-platform}
        description: Accuracy on labelled traffic is below 85%.
        model: fraud          # only on the sidecar of this model
      - name: retraining_triggered
        event: true           # raised by the sidecar, not by a condition
        severity: P4

A rule's keys:

===============  ==================================================================
``name``         required; letters, digits and ``_ . : -``, unique in the file
``condition``    required unless ``event``; see :mod:`sidecar.alerting.conditions`
``severity``     required; P1 (most urgent) to P4
``runbook``      a link for the person paged
``for``          how long the condition must hold before firing: seconds, or a
                 duration such as ``30s``, ``5m``, ``1h30m``, ``1d``; default 0
``labels``       a mapping of strings, added to the alert's labels
``description``  a sentence for the notification
``model``        the rule applies only where the sidecar's model has this name
``variant``      the rule applies only to this variant (champion, challenger...)
``event``        true: an event alert, raised by :meth:`AlertEngine.record_event`
===============  ==================================================================

Loading is strict: an unknown key, a duplicate name, a bad severity, a bad
duration or a condition that does not parse is an error. Every problem in
the file is reported at once in one :class:`AlertRulesError`, one line each,
naming the file and the rule (by name, else by its index ``alerts[2]``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

from sidecar.alerting.conditions import Condition, ConditionError, parse
from sidecar.durations import parse_duration
from sidecar.exceptions import ProblemsError
from sidecar.yamlfile import read_yaml

__all__ = [
    "RESERVED_LABELS",
    "RUNBOOKS",
    "SEVERITIES",
    "AlertRule",
    "AlertRulesError",
    "Severity",
    "default_rules",
    "load_rules",
    "parse_duration",
    "rules_from_mapping",
]

Severity = Literal["P1", "P2", "P3", "P4"]
SEVERITIES: Final[tuple[Severity, ...]] = get_args(Severity)
_SEVERITY: Final[dict[object, Severity]] = {s: s for s in SEVERITIES}
# Labels the sidecar sets on every alert; a rule may not override them.
RESERVED_LABELS: Final = frozenset({"alertname", "severity", "model"})
RULE_KEYS: Final = ("name", "condition", "severity", "runbook", "for", "labels", "description", "model", "variant")
EVENT_KEYS: Final = ("event",)

_NAME: Final = re.compile(r"[A-Za-z0-9_.:-]+")
_LABEL_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # Prometheus' label name syntax


class AlertRulesError(ProblemsError):
    """An alert rules file that cannot be used. ``problems`` has one line per problem."""


@dataclass(frozen=True)
class AlertRule:
    """One alert: a condition judged every evaluation, or (``condition=None``) an event.

    Usage::

        AlertRule("feature_drift", parse("psi > 0.2"), "P3", runbook="https://...", for_seconds=900)
    """

    name: str
    condition: Condition | None
    severity: Severity
    runbook: str | None = None
    for_seconds: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    model: str | None = None
    variant: str | None = None

    @property
    def is_event(self) -> bool:
        return self.condition is None

    def applies_to(self, model: str, variant: str | None = None) -> bool:
        """Whether the rule's ``model`` and ``variant`` filters let it run on this sidecar."""
        return (self.model is None or self.model == model) and (self.variant is None or self.variant == variant)


def load_rules(path: str | Path) -> tuple[AlertRule, ...]:
    """Read and validate a rules file; every failure is an :class:`AlertRulesError` naming the path."""
    try:
        data = read_yaml(path, "alert rules")
    except ValueError as exc:
        raise AlertRulesError([str(exc)]) from exc
    return rules_from_mapping(data, source=str(path))


def rules_from_mapping(data: object, *, source: str = "<rules>") -> tuple[AlertRule, ...]:
    """Validate parsed YAML; raise :class:`AlertRulesError` listing every problem."""
    if not isinstance(data, dict) or "alerts" not in data:
        raise AlertRulesError([f"{source}: expected a mapping with the key 'alerts', a list of rules"])
    problems = [f"{source}: unknown key {k!r}; expected 'alerts'" for k in data if k != "alerts"]
    raw_rules = data["alerts"]
    if not isinstance(raw_rules, list):
        raise AlertRulesError([*problems, f"{source}: 'alerts' must be a list of rules"])
    rules: list[AlertRule] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_rules):
        name = raw.get("name") if isinstance(raw, dict) else None
        name = name if isinstance(name, str) and name else None
        where = f"{source}: alerts[{index}]" if name is None else f"{source}: rule {name!r}"
        duplicate = name is not None and name in seen
        if name is not None and duplicate:
            problems.append(f"{where}: duplicate name; alerts[{seen[name]}] has it too")
        elif name is not None:
            seen[name] = index
        rule = _parse_rule(raw, where, problems)
        if rule is not None and not duplicate:
            rules.append(rule)
    if problems:
        raise AlertRulesError(problems)
    return tuple(rules)


def _parse_rule(raw: object, where: str, problems: list[str]) -> AlertRule | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: a rule must be a mapping with name, condition and severity")
        return None
    before = len(problems)
    event = raw.get("event", False)
    if not isinstance(event, bool):
        problems.append(f"{where}: 'event' is {event!r}; expected true or false")
    allowed = (*RULE_KEYS, *EVENT_KEYS)
    problems += [f"{where}: unknown key {k!r}; expected one of: {', '.join(allowed)}" for k in raw if k not in allowed]
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(f"{where}: 'name' is {name!r}; expected letters, digits and _ . : -")
    severity = _SEVERITY.get(raw.get("severity"))
    if severity is None:
        problems.append(f"{where}: 'severity' is {raw.get('severity')!r}; expected one of {', '.join(SEVERITIES)}")
    condition = _condition(raw, event is True, where, problems)
    for_seconds = 0.0
    if "for" in raw:
        try:
            for_seconds = parse_duration(raw["for"])
        except ValueError as exc:
            problems.append(f"{where}: 'for': {exc}")
        if event is True:
            problems.append(f"{where}: 'for' does not apply to an event alert")
    labels = _labels(raw.get("labels", {}), where, problems)
    texts = {key: _text(raw, key, where, problems) for key in ("runbook", "description", "model", "variant")}
    if len(problems) > before or severity is None:
        return None
    return AlertRule(
        name=str(name),
        condition=condition,
        severity=severity,
        runbook=texts["runbook"],
        for_seconds=for_seconds,
        labels=labels,
        description=texts["description"] or "",
        model=texts["model"],
        variant=texts["variant"],
    )


def _condition(raw: dict[Any, Any], event: bool, where: str, problems: list[str]) -> Condition | None:
    text = raw.get("condition")
    if event:
        if text is not None:
            problems.append(f"{where}: an event alert has no 'condition'; remove one of 'event' and 'condition'")
        return None
    if not isinstance(text, str) or not text.strip():
        problems.append(f"{where}: 'condition' is {text!r}; expected a condition such as psi > 0.2")
        return None
    try:
        return parse(text)
    except ConditionError as exc:
        problems.append(f"{where}: condition {text!r}: {exc}")
        return None


def _labels(value: object, where: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(value, dict):
        problems.append(f"{where}: 'labels' must be a mapping of label names to strings")
        return {}
    labels: dict[str, str] = {}
    for key, text in value.items():
        if not isinstance(key, str) or not _LABEL_NAME.fullmatch(key):
            problems.append(f"{where}: label name {key!r} is not a valid Prometheus label name")
        elif key in RESERVED_LABELS:
            problems.append(f"{where}: label {key!r} is set by the sidecar; choose another name")
        elif not isinstance(text, str):
            problems.append(f"{where}: label {key!r} is {text!r}; expected a string (quote it)")
        else:
            labels[key] = text
    return labels


def _text(raw: dict[Any, Any], key: str, where: str, problems: list[str]) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        problems.append(f"{where}: {key!r} is {value!r}; expected a string")
        return None
    return value


# The built-in rules, used without SIDECAR_ALERT_RULES: (name, condition, severity, for, description).
# The waits: serving errors are already a rate over a window, and a P1 that waits costs users, but
# one minute rides out a model-server restart. Performance and data signals come from windows of
# an hour or so and move slowly; waiting a few evaluations keeps one noisy window from paging. An
# experiment's decision is new once a minute (SIDECAR_EXPERIMENT_INTERVAL_SECONDS) and its guardrails read
# counters since start: five minutes rides out one analysis, and without an experiment it never fires.
_DEFAULTS: Final[tuple[tuple[str, str | None, Severity, float, str], ...]] = (
    (
        "serving_errors_high",
        "error_rate > 0.5",
        "P1",
        60.0,
        "More than half of the requests to the model server fail.",
    ),
    (
        "accuracy_drop",
        "accuracy_drop > 0.1",
        "P2",
        600.0,
        "Accuracy on labelled traffic fell more than 10% below its baseline, relative to the baseline.",
    ),
    (
        "data_quality_major",
        "quality_violations > 0.1",
        "P2",
        300.0,
        "More than 0.1 data-quality violations per captured record in the last closed quality slice.",
    ),
    (
        "experiment_revert",
        'experiment_decision == "revert"',
        "P2",
        300.0,
        "The A/B experiment's analysis says revert: a treatment is significantly worse on a primary metric, "
        "or breaches a guardrail.",
    ),
    (
        "feature_drift",
        "psi > 0.2",
        "P3",
        900.0,
        "A feature's distribution drifted from the reference (PSI above 0.2).",
    ),
    (
        "prediction_drift",
        "prediction_psi > 0.2",
        "P3",
        900.0,
        "The model's predictions drifted from the reference (PSI above 0.2).",
    ),
    (
        "minor_feature_drift",
        "psi > 0.1 and psi <= 0.2",
        "P4",
        1800.0,
        "A feature drifted moderately from the reference (PSI between 0.1 and 0.2).",
    ),
    (
        "retraining_triggered",
        None,
        "P4",
        0.0,
        "The sidecar asked for the model to be retrained.",
    ),
)


# Where the runbooks are in the docs, relative to their root: a status page or wiki that
# publishes the docs resolves these links, and no address of anyone's organisation is assumed.
RUNBOOKS: Final = "deploy/runbooks"


def default_rules(runbook_base_url: str | None = None) -> tuple[AlertRule, ...]:
    """The built-in rules; each runbook is ``<runbook_base_url>/<name>.md``, with exactly one slash.

    Without a base (``SIDECAR_RUNBOOK_BASE_URL`` unset) the links are relative,
    ``deploy/runbooks/<name>.md``; an empty base leaves the bare ``<name>.md``.

    Usage::

        default_rules()  # feature_drift links deploy/runbooks/feature_drift.md
        default_rules("https://github.com/acme/ml-sidecar/blob/main/deploy/runbooks/")
    """
    base = RUNBOOKS if runbook_base_url is None else runbook_base_url
    return tuple(
        AlertRule(
            name=name,
            condition=None if text is None else parse(text),
            severity=severity,
            runbook=f"{base.rstrip('/')}/{name}.md" if base else f"{name}.md",
            for_seconds=for_seconds,
            description=description,
        )
        for name, text, severity, for_seconds, description in _DEFAULTS
    )
