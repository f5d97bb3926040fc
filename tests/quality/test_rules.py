"""The quality rules file: good files parse, bad ones fail with exact messages, and rules change the checks."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from sidecar.exceptions import ProblemsError
from sidecar.quality import FeatureRule, QualityMonitor, QualityRules, QualityRulesError, load_rules
from tests.quality.builders import CLEAN, FakeClock, fired, profile, record

GOOD = [
    pytest.param("features: {}\n", QualityRules(), id="empty-features"),
    pytest.param(
        "disable: [unexpected, missing_period]\n",
        QualityRules(disable=frozenset({"unexpected", "missing_period"})),
        id="global-disable",
    ),
    pytest.param(
        """
        features:
          age: {min: 0, max: 120, nullable: false}
          country: {allowed: [DE, FR, US, 1, 2.0]}
          income: {non_negative: true, disable: [out_of_range]}
          note: {}
        """,
        QualityRules(
            features={
                "age": FeatureRule(min=0.0, max=120.0, nullable=False),
                "country": FeatureRule(allowed=frozenset({"DE", "FR", "US", "1", "2"})),
                "income": FeatureRule(non_negative=True, disable=frozenset({"out_of_range"})),
                "note": FeatureRule(),
            }
        ),
        id="example",
    ),
    pytest.param(
        """
        features:
          a: &base {min: 0, max: 1}
          b: {<<: *base, max: 5}
        """,
        QualityRules(features={"a": FeatureRule(min=0.0, max=1.0), "b": FeatureRule(min=0.0, max=5.0)}),
        id="merge-key-override-is-not-a-duplicate",
    ),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_good_files_parse(tmp_path: Path, text: str, expected: QualityRules) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    rules = load_rules(path)
    assert rules.features == expected.features
    assert rules.disable == expected.disable
    assert rules.source == str(path)


BAD = [
    ("", ["{path}: expected a mapping with the keys features and disable, found nothing"]),
    ("- age\n", ["{path}: expected a mapping with the keys features and disable, found a list"]),
    ("feature: {}\n", ["{path}: unknown key 'feature'; expected one of: features, disable"]),
    (
        "base: &base {min: 0}\nfeatures:\n  a: {<<: *base, max: 5}\n",
        ["{path}: unknown key 'base'; expected one of: features, disable"],
    ),
    ("features: [age]\n", ["{path}: 'features' must be a mapping of feature name to rule, found a list"]),
    ("features: {1990: {}}\n", ["{path}: feature name 1990 is not a string; quote it"]),
    (
        "features: {age: }\n",
        ["{path}: feature 'age': the rule must be a mapping, e.g. {{min: 0, max: 120}}, found nothing"],
    ),
    (
        "features: {age: {maxx: 3}}\n",
        [
            "{path}: feature 'age': unknown key 'maxx'; expected one of: min, max, allowed, nullable, non_negative,"
            " disable"
        ],
    ),
    ("features: {age: {max: abc}}\n", ["{path}: feature 'age': 'max' is 'abc'; expected a finite number"]),
    ("features: {age: {min: .inf}}\n", ["{path}: feature 'age': 'min' is inf; expected a finite number"]),
    ("features: {age: {min: true}}\n", ["{path}: feature 'age': 'min' is True; expected a finite number"]),
    (
        "features: {age: {min: 10, max: 5}}\n",
        ["{path}: feature 'age': 'min' (10) is greater than 'max' (5); expected min <= max"],
    ),
    ("features: {age: {nullable: maybe}}\n", ["{path}: feature 'age': 'nullable' is 'maybe'; expected true or false"]),
    ("features: {age: {non_negative: 1}}\n", ["{path}: feature 'age': 'non_negative' is 1; expected true or false"]),
    (
        "features: {age: {non_negative: true, min: -5}}\n",
        ["{path}: feature 'age': 'non_negative' is true but 'min' is -5; expected min >= 0"],
    ),
    (
        "features: {c: {allowed: DE}}\n",
        ["{path}: feature 'c': 'allowed' is 'DE'; expected a non-empty list of strings or numbers"],
    ),
    (
        "features: {c: {allowed: []}}\n",
        ["{path}: feature 'c': 'allowed' is []; expected a non-empty list of strings or numbers"],
    ),
    (
        "features: {c: {allowed: [DE, NO]}}\n",
        ["{path}: feature 'c': 'allowed' has the YAML boolean False; quote it, e.g. 'NO' or 'yes'"],
    ),
    (
        "features: {c: {allowed: [DE, null, [1]]}}\n",
        [
            "{path}: feature 'c': 'allowed' has None; expected strings or numbers",
            "{path}: feature 'c': 'allowed' has [1]; expected strings or numbers",
        ],
    ),
    (
        "features: {c: {allowed: [DE], max: 3}}\n",
        [
            "{path}: feature 'c': 'allowed' is for categorical features and 'min', 'max', 'non_negative' for numeric"
            " ones; a rule cannot have both"
        ],
    ),
    (
        "features: {c: {disable: [range]}}\n",
        [
            "{path}: feature 'c': 'disable' has 'range'; expected checks from: missing, type, null, out_of_range,"
            " unseen_category, negative"
        ],
    ),
    (
        "features: {c: {disable: [unexpected]}}\n",
        [
            "{path}: feature 'c': 'disable' has 'unexpected'; expected checks from: missing, type, null, out_of_range,"
            " unseen_category, negative"
        ],
    ),
    (
        "disable: volume_low\n",
        [
            "{path}: 'disable' is 'volume_low'; expected a list of checks from: missing, unexpected, type, null,"
            " out_of_range, unseen_category, negative, volume_low, volume_high, missing_period"
        ],
    ),
    (
        "features:\n  age: {min: 0}\n  age: {max: 1}\n",
        ["quality rules {path} is not valid YAML: found duplicate key 'age' at line 3, column 3"],
    ),
    (
        "features: {age: {min: 0}\n",
        ["quality rules {path} is not valid YAML: expected ',' or '}}', but got '<stream end>' at line 2, column 1"],
    ),
    (
        "extra: 1\nfeatures: {age: {max: x, typo: 1}, ok: {min: 1}, c: {allowed: [NO]}}\n",
        [
            "{path}: unknown key 'extra'; expected one of: features, disable",
            "{path}: feature 'age': unknown key 'typo'; expected one of: min, max, allowed, nullable, non_negative,"
            " disable",
            "{path}: feature 'age': 'max' is 'x'; expected a finite number",
            "{path}: feature 'c': 'allowed' has the YAML boolean False; quote it, e.g. 'NO' or 'yes'",
        ],
    ),
    (
        "features: {c: {allowed: ['" + "x" * 100 + "']}, d: {max: '" + "y" * 100 + "'}}\n",
        ["{path}: feature 'd': 'max' is '" + "y" * 56 + "...; expected a finite number"],
    ),
]


@pytest.mark.parametrize(("text", "messages"), BAD, ids=[f"bad-{i}" for i in range(len(BAD))])
def test_bad_files_fail_with_every_problem_named(tmp_path: Path, text: str, messages: list[str]) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(QualityRulesError) as info:
        load_rules(path)
    expected = [m.format(path=path) for m in messages]
    assert info.value.problems == expected
    assert str(info.value) == "\n".join(expected)
    assert isinstance(info.value, ProblemsError)


def test_an_unreadable_file_is_a_rules_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(QualityRulesError, match=f"^cannot read quality rules {missing}: No such file or directory$"):
        load_rules(missing)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(QualityRulesError, match=f"^quality rules {binary} is not UTF-8 text: invalid start byte$"):
        load_rules(binary)


def _monitor(rules: dict[str, Any], **kwargs: Any) -> QualityMonitor:
    return QualityMonitor(profile(), rules=QualityRules.from_mapping(rules), clock=FakeClock(), **kwargs)


@pytest.mark.parametrize(
    ("rules", "features", "expected"),
    [
        # min/max replace the reference's bounds, exactly, each on its own side.
        ({"age": {"max": 120}}, {**CLEAN, "age": 115}, {}),
        ({"age": {"max": 120}}, {**CLEAN, "age": 121}, {("age", "out_of_range"): 1}),
        ({"age": {"min": 18}}, {**CLEAN, "age": 17}, {("age", "out_of_range"): 1}),
        ({"age": {"min": 18}}, {**CLEAN, "age": 111}, {("age", "out_of_range"): 1}),
        ({"country": {"allowed": ["DE", "AT"]}}, {**CLEAN, "country": "AT"}, {}),
        ({"country": {"allowed": ["DE", "AT"]}}, {**CLEAN, "country": "US"}, {("country", "unseen_category"): 1}),
        ({"country": {"allowed": [1, 2]}}, {**CLEAN, "country": 1.0}, {}),
        ({"country": {"allowed": [1, 2]}}, {**CLEAN, "country": "2"}, {}),
        ({"income": {"nullable": False}}, {**CLEAN, "income": None}, {("income", "null"): 1}),
        ({"age": {"nullable": True}}, {**CLEAN, "age": None}, {}),
        ({"income": {"non_negative": True}}, {**CLEAN, "income": -1}, {("income", "negative"): 1}),
        ({"age": {"non_negative": False}}, {**CLEAN, "age": -1}, {}),
        ({"age": {"disable": ["out_of_range", "negative", "type"]}}, {**CLEAN, "age": -1000}, {}),
        ({"age": {"disable": ["type"]}}, {**CLEAN, "age": "x"}, {}),
        ({"age": {"disable": ["missing"]}}, {k: v for k, v in CLEAN.items() if k != "age"}, {}),
        ({"country": {"disable": ["unseen_category"]}}, {**CLEAN, "country": "XX"}, {}),
        # A rule-only feature is expected, and checked for what the rule states.
        ({"score": {"min": 0, "max": 1}}, CLEAN, {("score", "missing"): 1}),
        ({"score": {"min": 0, "max": 1}}, {**CLEAN, "score": 2}, {("score", "out_of_range"): 1}),
        ({"score": {"min": 0, "max": 1}}, {**CLEAN, "score": "x"}, {("score", "type"): 1}),
        ({"score": {"min": 0, "max": 1}}, {**CLEAN, "score": None}, {}),
        ({"score": {}}, {**CLEAN, "score": {"any": "thing"}}, {}),
        ({"score": {"nullable": False}}, {**CLEAN, "score": None}, {("score", "null"): 1}),
        # A rule of the other kind wins over the reference.
        ({"age": {"allowed": ["young", "old"]}}, {**CLEAN, "age": "old"}, {}),
        ({"age": {"allowed": ["young", "old"]}}, {**CLEAN, "age": 40}, {("age", "unseen_category"): 1}),
        ({"country": {"min": 0, "max": 5}}, {**CLEAN, "country": 3}, {}),
        ({"country": {"min": 0, "max": 5}}, {**CLEAN, "country": "DE"}, {("country", "type"): 1}),
    ],
)
def test_rules_change_the_checks(
    rules: dict[str, Any], features: dict[str, Any], expected: dict[tuple[str, str], int]
) -> None:
    m = _monitor({"features": rules})
    m.observe([record(features)])
    assert fired(m) == expected


def test_global_disable_turns_checks_off_everywhere_and_keeps_the_counters() -> None:
    m = _monitor({"disable": ["unexpected", "null", "missing_period"]}, slice_seconds=10.0)
    m.observe([record({**CLEAN, "age": None, "extra": 1})])
    m.snapshot(now=1100.0)  # ten empty slices
    counts = m.counts(now=1100.0)
    assert counts["__unexpected__", "unexpected"] == 0
    assert counts["age", "null"] == 0
    assert counts["__all__", "missing_period"] == 0
    assert m.snapshot(now=1100.0).volume.missing_periods_total == 9


def test_conflicts_name_the_features_where_the_rule_wins() -> None:
    rules = QualityRules.from_mapping(
        {"features": {"age": {"allowed": ["a"]}, "country": {"nullable": True}, "score": {"max": 1}}}, source="q.yaml"
    )
    assert rules.conflicts(profile()) == [
        "q.yaml: feature 'age': the rule makes it categorical but reference profile v1 says numeric; the rule wins"
    ]
