"""The definition file: the issue's example loads as written, and every bad file names the key at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.exceptions import ProblemsError
from sidecar.experiments.definition import (
    Assignment,
    Experiment,
    ExperimentError,
    Guardrail,
    Metric,
    Metrics,
    Variant,
    experiment_from_mapping,
    load_experiment,
)

ISSUE = """\
name: ranker-v2
mode: split                 # split | shadow
variants:
  control:   {weight: 0.9}                       # the primary upstream (SIDECAR_UPSTREAM_URL)
  treatment: {weight: 0.1, upstream: http://challenger:8080}
assignment: {key: header:x-user-id, salt: ranker-v2}   # or feature:user_id; no key = per request
metrics:
  primary:    [{name: conversion, source: outcome, kind: proportion}]
  secondary:  [{name: accuracy, source: label}, {name: revenue, source: outcome, kind: mean}]
  guardrails: [{name: error_rate, max_increase: 0.01}, {name: latency_p95_ms, max_increase: 20}]
alpha: 0.05
correction: holm            # holm | bonferroni | none, over primary + secondary
power: 0.8
mde: 0.02                   # the smallest effect worth detecting, absolute in the metric's unit
sequential: true            # always-valid p-values and confidence sequences, so looking early is safe
segment_by: header:x-country   # for the Simpson check; optional
"""


def minimal(**overrides: object) -> dict[str, object]:
    """A valid definition as parsed YAML, with keys replaced or (given None) removed."""
    data: dict[str, object] = {
        "name": "exp",
        "variants": {"control": {"weight": 0.5}, "treatment": {"weight": 0.5, "upstream": "http://b:8080"}},
        "metrics": {"primary": [{"name": "conversion", "source": "outcome", "kind": "proportion"}]},
        "mde": 0.01,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def problems(data: object) -> list[str]:
    with pytest.raises(ExperimentError) as caught:
        experiment_from_mapping(data, source="FILE")
    assert isinstance(caught.value, ProblemsError)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_the_issues_example_loads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(ISSUE, encoding="utf-8")
    conversion = Metric("conversion", "outcome", "proportion", "increase", 0.02)
    accuracy = Metric("accuracy", "label", "proportion", "increase", 0.02)
    revenue = Metric("revenue", "outcome", "mean", "increase", 0.02)
    assert load_experiment(path) == Experiment(
        name="ranker-v2",
        mode="split",
        variants=(Variant("control", 0.9, None), Variant("treatment", 0.1, "http://challenger:8080")),
        assignment=Assignment(("header", "x-user-id"), "ranker-v2"),
        metrics=Metrics(
            primary=(conversion,),
            secondary=(accuracy, revenue),
            guardrails=(Guardrail("error_rate", 0.01), Guardrail("latency_p95_ms", 20.0)),
        ),
        mde=0.02,
        alpha=0.05,
        correction="holm",
        power=0.8,
        sequential=True,
        segment_by=("header", "x-country"),
    )


def test_defaults_and_derived_parts() -> None:
    experiment = experiment_from_mapping(minimal())
    assert (experiment.mode, experiment.alpha, experiment.power, experiment.correction) == ("split", 0.05, 0.8, "holm")
    assert experiment.sequential is False and experiment.segment_by is None
    # No assignment key: a coin per request; the salt defaults to the name.
    assert experiment.assignment == Assignment(None, "exp")
    assert experiment.control == Variant("control", 0.5, None)
    assert experiment.treatments == (Variant("treatment", 0.5, "http://b:8080"),)
    assert experiment.metrics.tested == experiment.metrics.primary
    assert experiment.metrics.guardrails == ()


def test_label_metrics_imply_kind_and_goal_and_a_metric_may_set_its_own_mde() -> None:
    metrics = {
        "primary": [{"name": "mae", "source": "label", "mde": 0.5}],
        "secondary": [{"name": "churn", "source": "outcome", "kind": "proportion", "goal": "decrease"}],
    }
    experiment = experiment_from_mapping(minimal(metrics=metrics))
    assert experiment.metrics.primary == (Metric("mae", "label", "mean", "decrease", 0.5),)
    assert experiment.metrics.secondary == (Metric("churn", "outcome", "proportion", "decrease", 0.01),)


def test_shadow_mode_takes_two_variants_without_weights() -> None:
    variants = {"control": None, "challenger": {"upstream": "https://challenger.internal/"}}
    metrics = {"primary": [{"name": "accuracy", "source": "label"}]}
    experiment = experiment_from_mapping(minimal(mode="shadow", variants=variants, metrics=metrics))
    # The trailing slash goes: request paths are appended to the base.
    assert experiment.variants == (
        Variant("control", None, None),
        Variant("challenger", None, "https://challenger.internal"),
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # The four the issue names.
        (
            {"metrics": {"primary": [{"name": "conversion", "source": "clicks", "kind": "proportion"}]}},
            "FILE: metrics.primary[0].source is 'clicks'; expected one of outcome, label",
        ),
        (
            {"variants": {"control": {"weight": 0.9}, "treatment": {"weight": 0.2, "upstream": "http://b:80"}}},
            "FILE: variants has weights summing to 1.1; expected 1 (within 1e-09)",
        ),
        (
            {"variants": {"control": {"weight": 0.5}, "treatment": {"weight": 0.5, "upstream": "ftp://b"}}},
            "FILE: variants.treatment.upstream is 'ftp://b': expected an http:// or https:// URL with a host,"
            " e.g. http://challenger:8080",
        ),
        ({"correction": "sidak"}, "FILE: correction is 'sidak'; expected one of holm, bonferroni, none"),
        # And the rest of the checks.
        ({"name": "Ranker v2"}, "FILE: name is 'Ranker v2'; expected lower-case letters, digits, _ and -"),
        ({"mode": "canary"}, "FILE: mode is 'canary'; expected one of split, shadow"),
        ({"alpha": 1}, "FILE: alpha is 1; expected a number in (0, 1)"),
        ({"power": 0}, "FILE: power is 0; expected a number in (0, 1)"),
        ({"mde": 0}, "FILE: mde is 0; expected a number > 0"),
        ({"mde": None}, "FILE: mde is required"),
        ({"sequential": "maybe"}, "FILE: sequential is 'maybe'; expected true or false"),
        ({"segment_by": "cookie:x"}, "FILE: segment_by is 'cookie:x': expected 'header:NAME' or 'feature:NAME',"),
        ({"colour": "red"}, "FILE: the definition has the unknown key 'colour'; expected one of: name, mode,"),
        (
            {"variants": {"control": {"weight": 0.5}, "treatment": {"weight": 0.5}}},
            "FILE: variants has 2 variants without an upstream (control, treatment); expected exactly one",
        ),
        (
            {"variants": {"a": {"weight": 0.5, "upstream": "http://a"}, "b": {"weight": 0.5, "upstream": "http://b"}}},
            "FILE: variants has 0 variants without an upstream (none); expected exactly one",
        ),
        ({"variants": {"control": {"weight": 1}}}, "FILE: variants has 1 variant; an experiment compares two or more"),
        (
            {"variants": {"control": {"weight": 0}, "treatment": {"weight": 1.0, "upstream": "http://b"}}},
            "FILE: variants.control.weight is 0; expected a number > 0",
        ),
        (
            {"variants": {"Control": {"weight": 0.5}, "treatment": {"weight": 0.5, "upstream": "http://b"}}},
            "FILE: variants has the name 'Control'; expected lower-case letters, digits, _ and -",
        ),
        (
            {
                "variants": {
                    "control": {"weight": 0.5, "upstream": None},
                    "b": {"weight": 0.5, "upstream": "http://b:0"},
                }
            },
            "FILE: variants.b.upstream is 'http://b:0': expected a URL whose port is from 1 to 65535",
        ),
        (
            {"variants": {"control": {"weight": 0.5}, "b": {"weight": 0.5, "upstream": "http://b/?x=1"}}},
            "FILE: variants.b.upstream is 'http://b/?x=1': expected a URL without query string or fragment",
        ),
        ({"assignment": {"key": "header:x user"}}, "FILE: assignment.key is 'header:x user': 'x user' is not a valid"),
        ({"assignment": {"salt": 7}}, "FILE: assignment.salt is 7; expected a non-empty string"),
        ({"metrics": {"secondary": []}}, "FILE: metrics.primary is required: the metrics the decision is taken on"),
        ({"metrics": {"primary": []}}, "FILE: metrics.primary is empty; expected at least one metric"),
        (
            {"metrics": {"primary": [{"name": "revenue", "source": "outcome"}]}},
            "FILE: metrics.primary[0].kind is required for an outcome: proportion (0/1 values) or mean",
        ),
        (
            {"metrics": {"primary": [{"name": "f1", "source": "label"}]}},
            "FILE: metrics.primary[0].name is 'f1', which is not an average over requests, so arms cannot be compared",
        ),
        (
            {"metrics": {"primary": [{"name": "clicks", "source": "label"}]}},
            "FILE: metrics.primary[0].name is 'clicks', not a label metric; expected one of accuracy,",
        ),
        (
            {"metrics": {"primary": [{"name": "mae", "source": "label", "goal": "increase"}]}},
            "FILE: metrics.primary[0].goal is 'increase', but mae's goal is decrease; leave it out",
        ),
        (
            {"metrics": {"primary": [{"name": "x", "source": "outcome", "kind": "proportion", "unit": "%"}]}},
            "FILE: metrics.primary[0] has the unknown key 'unit'; expected one of: name, source, kind, goal, mde",
        ),
        (
            {
                "metrics": {
                    "primary": [{"name": "x", "source": "outcome", "kind": "mean"}],
                    "secondary": [{"name": "x", "source": "outcome", "kind": "mean"}],
                }
            },
            "FILE: metrics.secondary[0].name is 'x' again; a metric is listed once, as primary or secondary",
        ),
        (
            {
                "metrics": {
                    "primary": [{"name": "x", "source": "outcome", "kind": "mean"}],
                    "guardrails": [{"name": "cpu"}],
                }
            },
            "FILE: metrics.guardrails[0].name is 'cpu'; expected one of error_rate, latency_p95_ms",
        ),
        (
            {
                "metrics": {
                    "primary": [{"name": "x", "source": "outcome", "kind": "mean"}],
                    "guardrails": [{"name": "error_rate", "max_increase": -0.01}],
                }
            },
            "FILE: metrics.guardrails[0].max_increase is -0.01; expected a number >= 0",
        ),
    ],
)
def test_a_bad_definition_names_the_key(overrides: dict[str, object], expected: str) -> None:
    found = problems(minimal(**overrides))
    assert any(p.startswith(expected) for p in found), found


def test_shadow_mode_refuses_what_does_not_apply() -> None:
    variants = {"control": {"weight": 0.5}, "a": {"upstream": "http://a"}, "b": {"upstream": "http://b"}}
    found = problems(minimal(mode="shadow", variants=variants, assignment={"key": "header:x-user"}))
    assert found == [
        "FILE: variants.control.weight does not apply in shadow mode: every request goes to both variants",
        "FILE: variants has 3 variants; shadow mode compares exactly two, control and a challenger",
        "FILE: assignment does not apply in shadow mode: every request goes to both variants",
        "FILE: metrics.primary[0].source is 'outcome', but in shadow mode clients see only control's response;"
        " use a label metric",
    ]


def test_every_problem_is_listed_at_once() -> None:
    found = problems(
        minimal(
            name="X",
            correction="sidak",
            alpha=2,
            variants={"control": {"weight": 0.9}, "treatment": {"weight": 0.2, "upstream": "gopher://b"}},
        )
    )
    assert [p.split(" ")[1] for p in found] == [
        "name",
        "variants.treatment.upstream",
        "variants",
        "alpha",
        "correction",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a list\n", "FILE: expected a mapping with name, variants and metrics, found ['a list']"),
        ("name: [unclosed\n", "experiment definition FILE is not valid YAML: "),
    ],
)
def test_a_file_that_is_not_a_definition(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ExperimentError) as caught:
        load_experiment(path)
    [problem] = caught.value.problems
    assert problem.replace(str(path), "FILE").startswith(expected)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="cannot read experiment definition .*missing.yaml"):
        load_experiment(tmp_path / "missing.yaml")
