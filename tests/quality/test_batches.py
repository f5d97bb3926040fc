"""A batch checks as its records would one by one: the capture worker hands over up to 64 exchanges at once.

Most of a full batch is proved clean column by column; these pin what that
must not change: which records count, the order and bounds of the examples,
and the odd values a column-wise test could misread.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from sidecar.quality import QualityMonitor, QualityRules
from sidecar.records import PredictionRecord
from tests.quality.builders import CLEAN, FakeClock, fired, profile, record

SIZES = [1, 7, 8, 64, 200]


def monitor(**kwargs: Any) -> QualityMonitor:
    return QualityMonitor(profile(), clock=FakeClock(), **kwargs)


def clean_batch(size: int) -> list[dict[str, Any]]:
    return [{**CLEAN, "age": 20 + i % 50, "income": 10.0 * i} for i in range(size)]


def examples(m: QualityMonitor) -> list[tuple[str, str, str, str | None]]:
    return [(e.request_id, e.feature, e.check, e.value) for e in m.snapshot().examples]


def records(rows: list[dict[str, Any]]) -> list[PredictionRecord]:
    return [record(features, request_id=f"req-{i}") for i, features in enumerate(rows)]


def one_by_one(rows: list[dict[str, Any]], **kwargs: Any) -> QualityMonitor:
    m = monitor(**kwargs)
    for rec in records(rows):
        m.observe([rec])
    return m


@pytest.mark.parametrize("size", SIZES)
def test_a_clean_batch_fires_nothing(size: int) -> None:
    m = monitor()
    m.observe(records(clean_batch(size)))
    assert fired(m) == {}
    assert m.snapshot().examples == ()
    assert m.snapshot().recent.records == 0  # the open slice: nothing closed yet
    assert m.records_total == size


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("where", [0, -1])
def test_one_bad_value_at_either_end_of_a_batch_counts_once(size: int, where: int) -> None:
    cases: list[tuple[dict[str, Any], tuple[str, str]]] = [
        ({"age": 111}, ("age", "out_of_range")),
        ({"age": math.nan}, ("age", "null")),
        ({"age": "forty"}, ("age", "type")),
        ({"country": "XX"}, ("country", "unseen_category")),
        ({"country": ["DE"]}, ("country", "type")),
        ({"colour": "red"}, ("__unexpected__", "unexpected")),
    ]
    for change, expected in cases:
        rows = clean_batch(size)
        rows[where] = {**rows[where], **change}
        m = monitor()
        m.observe(records(rows))
        assert fired(m) == {expected: 1}, change
        request_id = f"req-{size - 1 if where == -1 else 0}"
        assert [(e.request_id, e.feature, e.check) for e in m.snapshot().examples] == [
            (request_id, next(iter(change)), expected[1])
        ]


def test_a_record_lacking_a_feature_in_a_full_batch() -> None:
    rows = clean_batch(64)
    rows[30] = {k: v for k, v in rows[30].items() if k != "income"}
    rows[31] = {k: v for k, v in rows[31].items() if k != "country"} | {"age": -1, "extra": 1}
    m = monitor()
    m.observe(records(rows))
    assert fired(m) == {
        ("income", "missing"): 1,
        ("country", "missing"): 1,
        ("age", "negative"): 1,
        ("__unexpected__", "unexpected"): 1,
    }
    assert [(r, f, c) for r, f, c, _ in examples(m)] == [
        ("req-31", "extra", "unexpected"),
        ("req-31", "country", "missing"),
        ("req-31", "age", "negative"),
        ("req-30", "income", "missing"),
    ]


def test_a_batch_mixing_clean_and_bad_records_counts_and_orders_as_one_by_one() -> None:
    rows = clean_batch(64)
    bad: dict[int, dict[str, Any]] = {
        3: {"age": -20, "plan": "gold"},  # out_of_range and negative, then unseen: numeric checks come first
        10: {"income": None, "plan": None},  # both nullable: clean
        11: {"age": "42", "income": True},  # a numeric string and a bool in range: clean
        12: {"country": None, "z": [1], "a": {}},  # null, then two unexpected names in the record's order
        40: {"age": math.inf, "income": "1e9"},
        63: {"age": 2**70, "country": 1},
    }
    for i, change in bad.items():
        rows[i] = {**rows[i], **change}
    m = monitor()
    m.observe(records(rows))
    assert fired(m) == fired(one_by_one(rows))
    assert examples(m) == examples(one_by_one(rows))
    assert examples(m) == [
        ("req-63", "country", "unseen_category", "1"),
        ("req-63", "age", "out_of_range", "1180591620717411303424"),
        ("req-40", "income", "out_of_range", '"1e9"'),
        ("req-40", "age", "out_of_range", "inf"),
        ("req-12", "a", "unexpected", "{}"),
        ("req-12", "z", "unexpected", "[1]"),
        ("req-12", "country", "null", "null"),
        ("req-3", "plan", "unseen_category", '"gold"'),
        ("req-3", "age", "negative", "-20"),
        ("req-3", "age", "out_of_range", "-20"),
    ]
    recent = m.snapshot(1060.0).recent
    assert (recent.records, recent.bad_records, recent.violations) == (64, 4, 10)


def test_examples_keep_the_last_of_a_batch_in_order() -> None:
    # 64 records with two violations each, and room for five examples: the batch's last five.
    rows = [{**CLEAN, "age": "x", "country": "XX"} for _ in range(64)]
    m = monitor(examples=5)
    m.observe(records(rows))
    assert fired(m) == {("age", "type"): 64, ("country", "unseen_category"): 64}
    assert examples(m) == [
        ("req-63", "country", "unseen_category", '"XX"'),
        ("req-63", "age", "type", '"x"'),
        ("req-62", "country", "unseen_category", '"XX"'),
        ("req-62", "age", "type", '"x"'),
        ("req-61", "country", "unseen_category", '"XX"'),
    ]
    # A later batch pushes out the older examples as it would one at a time.
    m.observe([record({**CLEAN, "age": "y"}, request_id="later")])
    assert examples(m)[:2] == [("later", "age", "type", '"y"'), ("req-63", "country", "unseen_category", '"XX"')]


@pytest.mark.parametrize("size", SIZES)
def test_ints_beyond_double_precision_compare_exactly(size: int) -> None:
    # 2**53 + 1 is not a double: read as one it would round to 2**53 and pass a max of 2**53.
    rules = QualityRules.from_mapping({"features": {"big": {"min": 0, "max": 2**53}}})
    rows = [{**CLEAN, "big": 2**53} for _ in range(size)]
    rows[-1] = {**CLEAN, "big": 2**53 + 1}
    m = monitor(rules=rules)
    m.observe(records(rows))
    assert fired(m) == {("big", "out_of_range"): 1}


@pytest.mark.parametrize("size", SIZES)
def test_features_without_a_range_vocabulary_or_kind(size: int) -> None:
    rules = QualityRules.from_mapping(
        {
            "disable": ["unseen_category"],
            "features": {"note": {"nullable": False}, "age": {"disable": ["out_of_range", "negative"]}},
        }
    )
    rows = [{**CLEAN, "note": "n", "age": -1e300, "country": "anything"} for _ in range(size)]
    rows[-1] = {**rows[-1], "note": math.nan, "country": 7, "plan": 2.5}
    if size > 1:
        rows[0] = {**rows[0], "note": None, "country": {"a": 1}}
    m = monitor(rules=rules)
    m.observe(records(rows))
    expected = {("note", "null"): 2 if size > 1 else 1}
    if size > 1:
        expected["country", "type"] = 1
    assert fired(m) == expected


def test_weights_add_up_as_they_arrive() -> None:
    # The volume is the records' weights summed left to right: the same float, bit for bit.
    probabilities = [0.3, 0.7, 1.0, 1 / 3, 0.1] * 13
    m = QualityMonitor(profile(), slice_seconds=10.0, clock=FakeClock(1000.0))
    m.observe([record(probability=p) for p in probabilities])
    total = 0.0
    for p in probabilities:
        total += 1.0 / p
    assert m.snapshot(1010.0).volume.actual_per_second == total / 10.0


def test_freshness_takes_the_newest_timestamp_of_a_batch() -> None:
    m = monitor()
    stamps = [990.0 + (i * 7) % 13 for i in range(64)]
    stamps[5] = math.nan  # a NaN never becomes the newest
    m.observe([record(timestamp=t) for t in stamps])
    assert m.freshness().last_request == 1002.0
