"""The experiment definition: the YAML file named by ``SIDECAR_EXPERIMENT_PATH``.

One experiment at a time. Format::

    name: ranker-v2
    mode: split                 # split | shadow
    variants:
      control:   {weight: 0.9}                       # the primary upstream (SIDECAR_UPSTREAM_URL)
      treatment: {weight: 0.1, upstream: http://challenger:8080}
    assignment: {key: header:x-user-id, salt: ranker-v2}   # or feature:user_id; no key = per request
    metrics:
      primary:    [{name: conversion, source: outcome, kind: proportion}]
      secondary:  [{name: accuracy, source: label}, {name: revenue, source: outcome, kind: mean, mde: 5}]
      guardrails: [{name: error_rate, max_increase: 0.01}, {name: latency_p95_ms, max_increase: 20}]
    alpha: 0.05
    correction: holm            # holm | bonferroni | none, over primary + secondary
    power: 0.8
    mde: 0.02                   # the smallest effect worth detecting, absolute in the metric's unit
    sequential: true            # always-valid p-values and confidence sequences
    segment_by: header:x-country

The keys:

==============  ========================================================================
``name``        required; ``[a-z0-9_-]+`` (it becomes a label value); the default salt
``mode``        ``split`` (default): each unit goes to one variant, by weight;
                ``shadow``: every client gets control's response and a copy of each
                request goes to the other variant
``variants``    required; a mapping of name (``[a-z0-9_-]+``) to ``weight`` and
                ``upstream``. Exactly one variant has no ``upstream``: the control,
                served by the primary upstream. Split mode: weights positive, summing
                to 1 (within 1e-9); the file's order of the variants is the order of
                their ranges of the hash, so keep it. Shadow mode: exactly two
                variants and no weights (every request goes to both).
``assignment``  split mode only: ``key``, ``header:NAME`` or ``feature:NAME`` (absent:
                a per-request coin), and ``salt`` (default: the name)
``metrics``     ``primary`` (required, at least one), ``secondary``, ``guardrails``
``alpha``       in (0, 1); default 0.05
``correction``  ``holm`` (default), ``bonferroni`` or ``none``: over primary + secondary
``power``       in (0, 1); default 0.8
``mde``         required, > 0: the smallest effect worth detecting, in the unit of the
                metric (a proportion's 0.02 is two points); a metric may set its own
``sequential``  true: always-valid p-values and confidence sequences; default false
``segment_by``  ``header:NAME`` or ``feature:NAME``: the segments of the Simpson fields
==============  ========================================================================

A metric: ``name`` (``[a-z0-9_-]+``, unique across primary and secondary),
``source`` (``outcome``: posted to ``/api/v1/outcomes``; ``label``: computed
from the labels), ``kind`` (``proportion`` or ``mean``; required for an
outcome, implied by the name for a label metric, see :data:`LABEL_METRICS`),
``goal`` (``increase``, the default, or ``decrease``: which way is better;
implied for a label metric) and ``mde`` (overrides the experiment's). A
guardrail: ``name`` (``error_rate`` or ``latency_p95_ms``) and
``max_increase`` (>= 0, absolute: 0.01 is one point of error rate, 20 is
20 ms). In shadow mode the client sees only control's response, so a business
outcome cannot tell the variants apart: only label metrics are allowed there.

Loading is strict: an unknown key, a wrong type or a value out of range is an
error, and every problem in the file is reported at once in one
:class:`ExperimentError`, one line each, naming the file and the key path
(``metrics.primary[0].source``), the way the alert rules are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, get_args

from sidecar.exceptions import ProblemsError
from sidecar.experiments.fields import NAME, Fields, show
from sidecar.syntax.performance import METRICS
from sidecar.syntax.sampling import SourceKind
from sidecar.yamlfile import StrictLoader, read_yaml

__all__ = [
    "CORRECTIONS",
    "GUARDRAILS",
    "LABEL_METRICS",
    "MODES",
    "WEIGHT_TOLERANCE",
    "Assignment",
    "Correction",
    "Experiment",
    "ExperimentError",
    "Goal",
    "Guardrail",
    "GuardrailName",
    "Kind",
    "Metric",
    "Metrics",
    "Mode",
    "Source",
    "Variant",
    "experiment_from_mapping",
    "load_experiment",
]

Mode = Literal["split", "shadow"]
MODES: Final[tuple[Mode, ...]] = get_args(Mode)
Source = Literal["outcome", "label"]
SOURCES: Final[tuple[Source, ...]] = get_args(Source)
Kind = Literal["proportion", "mean"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
Goal = Literal["increase", "decrease"]
GOALS: Final[tuple[Goal, ...]] = get_args(Goal)
Correction = Literal["holm", "bonferroni", "none"]
CORRECTIONS: Final[tuple[Correction, ...]] = get_args(Correction)
GuardrailName = Literal["error_rate", "latency_p95_ms"]
GUARDRAILS: Final[tuple[GuardrailName, ...]] = get_args(GuardrailName)

# The label metrics two arms can be compared by: each is an average over requests (a proportion
# of 0/1 outcomes, or a mean of per-request losses and gains), so it has a per-arm mean and
# variance. AUC, F1 and RMSE are not (they are functions of the whole sample), nor is the
# label-free estimated accuracy. precision and recall are proportions over the requests
# predicted positive and labelled positive.
LABEL_METRICS: Final[Mapping[str, tuple[Kind, Goal]]] = {
    "accuracy": ("proportion", "increase"),
    "precision": ("proportion", "increase"),
    "recall": ("proportion", "increase"),
    "log_loss": ("mean", "decrease"),
    "mae": ("mean", "decrease"),
    "mse": ("mean", "decrease"),
    "mape": ("mean", "decrease"),
    "ndcg": ("mean", "increase"),
    "mrr": ("mean", "increase"),
    "map": ("mean", "increase"),
}

# Weights are written in decimal (0.9, 0.1), which binary floats hold only nearly.
WEIGHT_TOLERANCE: Final = 1e-9

TOP_KEYS: Final = (
    "name", "mode", "variants", "assignment", "metrics", "alpha", "correction", "power", "mde", "sequential",
    "segment_by",
)  # fmt: skip
VARIANT_KEYS: Final = ("weight", "upstream")
ASSIGNMENT_KEYS: Final = ("key", "salt")
METRICS_KEYS: Final = ("primary", "secondary", "guardrails")
METRIC_KEYS: Final = ("name", "source", "kind", "goal", "mde")
GUARDRAIL_KEYS: Final = ("name", "max_increase")

_NOT_COMPARABLE: Final = tuple(
    sorted({m for names in METRICS.values() for m in names} - set(LABEL_METRICS))
)  # fmt: skip

T = TypeVar("T")


class ExperimentError(ProblemsError):
    """An experiment definition that cannot be used. ``problems`` has one line per problem, naming the key."""


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm. ``upstream`` None: the control, served by the primary upstream; ``weight`` None in shadow mode.

    Usage::

        Variant("treatment", 0.1, "http://challenger:8080")
    """

    name: str
    weight: float | None
    upstream: str | None

    @property
    def is_control(self) -> bool:
        return self.upstream is None


@dataclass(frozen=True, slots=True)
class Assignment:
    """How units are assigned: the ``key`` they are hashed by (None: a coin per request), and the ``salt``.

    Usage::

        Assignment(("header", "x-user-id"), salt="ranker-v2")
    """

    key: tuple[SourceKind, str] | None
    salt: str


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric the arms are compared by; ``mde`` is resolved (the metric's own, else the experiment's).

    Usage::

        Metric("conversion", source="outcome", kind="proportion", goal="increase", mde=0.01)
    """

    name: str
    source: Source
    kind: Kind
    goal: Goal
    mde: float


@dataclass(frozen=True, slots=True)
class Guardrail:
    """A serving signal the treatment may not worsen by more than ``max_increase`` (absolute).

    Usage::

        Guardrail("latency_p95_ms", max_increase=20.0)
    """

    name: GuardrailName
    max_increase: float


@dataclass(frozen=True, slots=True)
class Metrics:
    """The ``metrics`` section. The multiplicity correction runs over ``primary`` + ``secondary``.

    Usage::

        Metrics(primary=(Metric("conversion", "outcome", "proportion", "increase", 0.01),))
    """

    primary: tuple[Metric, ...]
    secondary: tuple[Metric, ...] = ()
    guardrails: tuple[Guardrail, ...] = ()

    @property
    def tested(self) -> tuple[Metric, ...]:
        """Primary then secondary: the family the correction adjusts for."""
        return self.primary + self.secondary


@dataclass(frozen=True, slots=True)
class Experiment:
    """A validated experiment definition.

    Usage::

        experiment = load_experiment("/etc/sidecar/experiment.yaml")
        experiment.control.name          # "control"
        [v.name for v in experiment.treatments]  # ["treatment"]
        experiment.metrics.primary[0].kind       # "proportion"
    """

    name: str
    mode: Mode
    variants: tuple[Variant, ...]
    assignment: Assignment
    metrics: Metrics
    mde: float
    alpha: float = 0.05
    correction: Correction = "holm"
    power: float = 0.8
    sequential: bool = False
    segment_by: tuple[SourceKind, str] | None = None

    @property
    def control(self) -> Variant:
        return next(v for v in self.variants if v.is_control)

    @property
    def treatments(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if not v.is_control)


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate a definition file; every failure is an :class:`ExperimentError` naming the path."""
    try:
        data = read_yaml(path, "experiment definition", StrictLoader)
    except ValueError as exc:
        raise ExperimentError([str(exc)]) from exc
    return experiment_from_mapping(data, source=str(path))


def experiment_from_mapping(data: object, *, source: str = "<experiment>") -> Experiment:
    """Validate parsed YAML; raise :class:`ExperimentError` listing every problem."""
    if not isinstance(data, dict):
        raise ExperimentError([f"{source}: expected a mapping with name, variants and metrics, found {show(data)}"])
    fields = Fields(source)
    fields.unknown(data, "", TOP_KEYS)
    name = fields.name(data, "name", "")
    mode = fields.choice(data, "mode", "", MODES, default="split")
    variants = _variants(data, mode, fields)
    assignment = _assignment(data, mode, name, fields)
    mde = fields.number(data, "mde", "", low=0.0, low_open=True, required=True)
    metrics = _metrics(data, mode, mde, fields)
    alpha = fields.number(data, "alpha", "", low=0.0, high=1.0, low_open=True, high_open=True, default=0.05)
    power = fields.number(data, "power", "", low=0.0, high=1.0, low_open=True, high_open=True, default=0.8)
    correction = fields.choice(data, "correction", "", CORRECTIONS, default="holm")
    sequential = fields.flag(data, "sequential", "", default=False)
    segment_by = fields.key_source(data, "segment_by", "")
    if fields.problems:
        raise ExperimentError(fields.problems)
    return Experiment(
        name=_known(name),
        mode=_known(mode),
        variants=variants,
        assignment=assignment,
        metrics=_known(metrics),
        mde=_known(mde),
        alpha=_known(alpha),
        correction=_known(correction),
        power=_known(power),
        sequential=_known(sequential),
        segment_by=segment_by,
    )


def _variants(data: dict[Any, Any], mode: Mode | None, fields: Fields) -> tuple[Variant, ...]:
    raw = data.get("variants")
    if not isinstance(raw, dict) or not raw:
        fields.add("variants", f"is {show(raw)}; expected a mapping of variant name to {{weight, upstream}}")
        return ()
    variants: list[Variant] = []
    controls: list[str] = []
    for name, spec in raw.items():
        path = f"variants.{name}"
        if not isinstance(name, str) or not NAME.fullmatch(name):
            fields.add("variants", f"has the name {show(name)}; expected lower-case letters, digits, _ and -")
            continue
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            fields.add(path, f"is {show(spec)}; expected a mapping with weight and upstream")
            continue
        fields.unknown(spec, path, VARIANT_KEYS)
        if mode == "shadow" and "weight" in spec:
            fields.add(f"{path}.weight", "does not apply in shadow mode: every request goes to both variants")
            weight = None
        elif mode == "shadow":
            weight = None
        else:
            weight = fields.number(spec, "weight", path, low=0.0, low_open=True, required=True)
        if spec.get("upstream") is None:
            controls.append(name)
        variants.append(Variant(name, weight, fields.url(spec, "upstream", path)))
    if len(controls) != 1:
        fields.add(
            "variants",
            f"has {len(controls)} variants without an upstream ({', '.join(controls) or 'none'}); expected exactly"
            " one, the control, which the primary upstream serves",
        )
    if mode == "shadow" and len(raw) != 2:
        fields.add("variants", f"has {len(raw)} variants; shadow mode compares exactly two, control and a challenger")
    if mode == "split" and len(raw) < 2:
        fields.add("variants", f"has {len(raw)} variant; an experiment compares two or more")
    weights = [v.weight for v in variants if v.weight is not None]
    if mode == "split" and len(weights) == len(raw) and abs(math.fsum(weights) - 1.0) > WEIGHT_TOLERANCE:
        fields.add(
            "variants", f"has weights summing to {math.fsum(weights):.12g}; expected 1 (within {WEIGHT_TOLERANCE:g})"
        )
    return tuple(variants)


def _assignment(data: dict[Any, Any], mode: Mode | None, name: str | None, fields: Fields) -> Assignment:
    raw = data.get("assignment")
    default = Assignment(None, name or "")
    if raw is None:
        return default
    if mode == "shadow":
        fields.add("assignment", "does not apply in shadow mode: every request goes to both variants")
        return default
    if not isinstance(raw, dict):
        fields.add("assignment", f"is {show(raw)}; expected a mapping with key and salt")
        return default
    fields.unknown(raw, "assignment", ASSIGNMENT_KEYS)
    key = fields.key_source(raw, "key", "assignment")
    salt = raw.get("salt", name)
    if not isinstance(salt, str) or not salt:
        fields.add("assignment.salt", f"is {show(salt)}; expected a non-empty string")
        salt = ""
    return Assignment(key, salt)


def _metrics(data: dict[Any, Any], mode: Mode | None, mde: float | None, fields: Fields) -> Metrics | None:
    raw = data.get("metrics")
    if not isinstance(raw, dict):
        fields.add("metrics", f"is {show(raw)}; expected a mapping with primary, secondary and guardrails")
        return None
    fields.unknown(raw, "metrics", METRICS_KEYS)
    seen: set[str] = set()
    primary = _metric_list(raw, "primary", mode, mde, seen, fields)
    secondary = _metric_list(raw, "secondary", mode, mde, seen, fields)
    if raw.get("primary") == []:
        fields.add("metrics.primary", "is empty; expected at least one metric, the one the decision is taken on")
    guardrails: list[Guardrail] = []
    raw_guardrails = raw.get("guardrails", [])
    if not isinstance(raw_guardrails, list):
        fields.add("metrics.guardrails", f"is {show(raw_guardrails)}; expected a list of {{name, max_increase}}")
        raw_guardrails = []
    for index, spec in enumerate(raw_guardrails):
        path = f"metrics.guardrails[{index}]"
        if not isinstance(spec, dict):
            fields.add(path, f"is {show(spec)}; expected a mapping with name and max_increase")
            continue
        fields.unknown(spec, path, GUARDRAIL_KEYS)
        guardrail_name = fields.choice(spec, "name", path, GUARDRAILS, required=True)
        max_increase = fields.number(spec, "max_increase", path, low=0.0, required=True)
        if guardrail_name in {g.name for g in guardrails}:
            fields.add(f"{path}.name", f"is {guardrail_name!r} again; each guardrail is listed once")
        elif guardrail_name is not None and max_increase is not None:
            guardrails.append(Guardrail(guardrail_name, max_increase))
    return Metrics(tuple(primary), tuple(secondary), tuple(guardrails))


def _metric_list(
    raw: dict[Any, Any], section: str, mode: Mode | None, mde: float | None, seen: set[str], fields: Fields
) -> list[Metric]:
    specs = raw.get(section, [])
    if section == "primary" and "primary" not in raw:
        fields.add("metrics.primary", "is required: the metrics the decision is taken on")
    if not isinstance(specs, list):
        fields.add(f"metrics.{section}", f"is {show(specs)}; expected a list of {{name, source, kind}}")
        return []
    metrics: list[Metric] = []
    for index, spec in enumerate(specs):
        path = f"metrics.{section}[{index}]"
        if not isinstance(spec, dict):
            fields.add(path, f"is {show(spec)}; expected a mapping with name, source and kind")
            continue
        metric = _metric(spec, path, mode, mde, fields)
        if metric is None:
            continue
        if metric.name in seen:
            fields.add(f"{path}.name", f"is {metric.name!r} again; a metric is listed once, as primary or secondary")
            continue
        seen.add(metric.name)
        metrics.append(metric)
    return metrics


def _metric(spec: dict[Any, Any], path: str, mode: Mode | None, mde: float | None, fields: Fields) -> Metric | None:
    before = len(fields.problems)
    fields.unknown(spec, path, METRIC_KEYS)
    name = fields.name(spec, "name", path)
    source = fields.choice(spec, "source", path, SOURCES, required=True)
    kind = fields.choice(spec, "kind", path, KINDS)
    goal = fields.choice(spec, "goal", path, GOALS)
    own_mde = fields.number(spec, "mde", path, low=0.0, low_open=True)
    if source == "outcome" and mode == "shadow":
        fields.add(
            f"{path}.source",
            "is 'outcome', but in shadow mode clients see only control's response; use a label metric",
        )
    if source == "outcome" and kind is None and "kind" not in spec:
        fields.add(f"{path}.kind", "is required for an outcome: proportion (0/1 values) or mean")
    if source == "label" and name is not None:
        implied = LABEL_METRICS.get(name)
        if implied is None and name in _NOT_COMPARABLE:
            fields.add(
                f"{path}.name",
                f"is {name!r}, which is not an average over requests, so arms cannot be compared by it;"
                f" expected one of {', '.join(LABEL_METRICS)}",
            )
        elif implied is None:
            fields.add(f"{path}.name", f"is {name!r}, not a label metric; expected one of {', '.join(LABEL_METRICS)}")
        else:
            for key, value, want in (("kind", kind, implied[0]), ("goal", goal, implied[1])):
                if value is not None and value != want:
                    fields.add(f"{path}.{key}", f"is {value!r}, but {name}'s {key} is {want}; leave it out")
            kind, goal = implied
    resolved_mde = own_mde if own_mde is not None else mde
    if len(fields.problems) > before or name is None or source is None or kind is None or resolved_mde is None:
        return None
    return Metric(name, source, kind, goal or "increase", resolved_mde)


def _known(value: T | None) -> T:
    """A value the checks returned; None only comes with a problem, and there were none."""
    if value is None:
        raise RuntimeError("a value was missing without a problem reported")  # pragma: no cover - a bug
    return value
