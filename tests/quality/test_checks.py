"""Each check fires on a crafted malformed row, and no check fires on a clean one."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sidecar.quality import CHECKS, FEATURE_CHECKS, QualityMonitor
from tests.quality.builders import CLEAN, FakeClock, fired, profile, record


def monitor(**kwargs: Any) -> QualityMonitor:
    return QualityMonitor(profile(), clock=FakeClock(), **kwargs)


def with_(**changes: Any) -> dict[str, Any]:
    return {**CLEAN, **changes}


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in CLEAN.items() if k != name}


def test_a_clean_row_fires_nothing() -> None:
    m = monitor()
    m.observe([record(), record(with_(age="42", income=None, plan=None)), record(with_(age=True, income=-400))])
    assert fired(m) == {}


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        pytest.param(without("age"), {("age", "missing"): 1}, id="missing"),
        pytest.param(without("plan"), {("plan", "missing"): 1}, id="missing-even-if-nullable"),
        pytest.param(with_(colour="red"), {("__unexpected__", "unexpected"): 1}, id="unexpected"),
        pytest.param(with_(a=1, b=2), {("__unexpected__", "unexpected"): 2}, id="unexpected-each-name"),
        pytest.param(with_(age="forty"), {("age", "type"): 1}, id="type-numeric-string"),
        pytest.param(with_(age={"years": 40}), {("age", "type"): 1}, id="type-numeric-object"),
        pytest.param(with_(age=[40]), {("age", "type"): 1}, id="type-numeric-list"),
        pytest.param(with_(country={"code": "DE"}), {("country", "type"): 1}, id="type-categorical-object"),
        pytest.param(with_(country=["DE"]), {("country", "type"): 1}, id="type-categorical-list"),
        pytest.param(with_(age=None), {("age", "null"): 1}, id="null"),
        pytest.param(with_(age=math.nan), {("age", "null"): 1}, id="null-nan"),
        pytest.param(with_(age="nan"), {("age", "null"): 1}, id="null-nan-string"),
        pytest.param(with_(country=None), {("country", "null"): 1}, id="null-categorical"),
        pytest.param(with_(age=111), {("age", "out_of_range"): 1}, id="out-of-range-high"),
        pytest.param(with_(age="111"), {("age", "out_of_range"): 1}, id="out-of-range-numeric-string"),
        pytest.param(with_(income=-1600), {("income", "out_of_range"): 1}, id="out-of-range-low"),
        pytest.param(with_(age=math.inf), {("age", "out_of_range"): 1}, id="out-of-range-inf"),
        pytest.param(with_(country="XX"), {("country", "unseen_category"): 1}, id="unseen"),
        pytest.param(with_(country=1), {("country", "unseen_category"): 1}, id="unseen-number"),
        pytest.param(with_(age=-1), {("age", "negative"): 1}, id="negative"),
        pytest.param(with_(age=-20), {("age", "out_of_range"): 1, ("age", "negative"): 1}, id="negative-and-out"),
        pytest.param(
            {"age": "x", "country": "XX", "extra": 1},
            {
                ("age", "type"): 1,
                ("income", "missing"): 1,
                ("country", "unseen_category"): 1,
                ("plan", "missing"): 1,
                ("__unexpected__", "unexpected"): 1,
            },
            id="several",
        ),
    ],
)
def test_each_check_fires_on_a_malformed_row(features: dict[str, Any], expected: dict[tuple[str, str], int]) -> None:
    m = monitor()
    m.observe([record(features)])
    assert fired(m) == expected


def test_range_tolerance_is_a_fraction_of_the_reference_range() -> None:
    # age's reference range is [0, 100]: at 0.1 the allowed range is [-10, 110], at 0 exactly [0, 100].
    loose, strict = monitor(range_tolerance=0.1), monitor(range_tolerance=0.0)
    rows = [record(with_(age=105)), record(with_(age=110)), record(with_(age=110.5))]
    loose.observe(rows)
    strict.observe(rows)
    assert fired(loose) == {("age", "out_of_range"): 1}
    assert fired(strict) == {("age", "out_of_range"): 3}


def test_weights_do_not_matter_for_violation_counts() -> None:
    m = monitor()
    m.observe([record(with_(age="x"), probability=0.01), record(with_(age="x"), probability=1.0)])
    assert fired(m) == {("age", "type"): 2}


def test_every_label_pair_exists_from_the_start_and_traffic_adds_none() -> None:
    m = monitor()
    before = m.counts()
    assert set(before) == {(f, c) for f in ("age", "income", "country", "plan") for c in FEATURE_CHECKS} | {
        ("__unexpected__", "unexpected"),
        ("__all__", "volume_low"),
        ("__all__", "volume_high"),
        ("__all__", "missing_period"),
    }
    assert {c for _, c in before} == set(CHECKS)
    m.observe([record({**CLEAN, f"name-{i}": i}) for i in range(1000)])
    after = m.counts()
    assert set(after) == set(before)
    assert after["__unexpected__", "unexpected"] == 1000
    assert not any(name.startswith("name-") for name, _ in after)


def test_examples_are_bounded_newest_first_and_truncated() -> None:
    m = monitor(examples=3)
    m.observe([record(with_(age="x"), request_id=f"req-{i}") for i in range(10)])
    snap = m.snapshot()
    assert [(e.request_id, e.feature, e.check, e.value) for e in snap.examples] == [
        ("req-9", "age", "type", '"x"'),
        ("req-8", "age", "type", '"x"'),
        ("req-7", "age", "type", '"x"'),
    ]

    m = monitor()
    long_name = "n" * 1000
    m.observe(
        [
            record(with_(country="y" * 100_000), request_id="r" * 1000),
            record({**CLEAN, long_name: list(range(10_000))}),
            record(without("age")),
            record(with_(age=math.nan)),
        ]
    )
    nan, missing, unexpected, unseen = m.snapshot().examples
    assert unseen.value is not None and len(unseen.value) == 80 and unseen.value.endswith("…")
    assert unseen.value.startswith('"yyy')
    assert len(unseen.request_id) == 128
    assert unexpected.check == "unexpected" and unexpected.feature == "n" * 63 + "…"
    assert unexpected.value is not None and len(unexpected.value) == 80 and unexpected.value.startswith("[0,1,2")
    assert (missing.feature, missing.check, missing.value) == ("age", "missing", None)
    assert (nan.check, nan.value) == ("null", "nan")


def test_no_examples_are_kept_when_asked_for_none() -> None:
    m = monitor(examples=0)
    m.observe([record(with_(age="x"))])
    assert m.snapshot().examples == ()
    assert fired(m) == {("age", "type"): 1}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"range_tolerance": -0.1}, "range_tolerance must be a number >= 0, got -0.1"),
        ({"range_tolerance": math.nan}, "range_tolerance must be a number >= 0, got nan"),
        ({"examples": -1}, "examples must be >= 0, got -1"),
        ({"slice_seconds": 0.0}, "slice_seconds must be a positive number, got 0.0"),
        ({"expected_rate": 0.0}, "expected_rate must be a positive number or None, got 0.0"),
    ],
)
def test_bad_constructor_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        monitor(**kwargs)
    assert str(info.value) == message
