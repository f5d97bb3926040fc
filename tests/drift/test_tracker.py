"""The tracker end to end: verdicts, weights, outputs, labels, the dataset level, and its settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sidecar.drift import DriftTracker, evaluate
from tests.drift.helpers import FakeClock, categorical, numeric, profile, record, records

COUNTRIES = ["FR", "DE", "ES", "IT"]
SHARES = [0.4, 0.3, 0.2, 0.1]


def reference_profile(rng: np.random.Generator, **kwargs: Any) -> Any:
    return profile(
        {
            "income": numeric(rng.normal(50.0, 10.0, 20_000)),
            "age": numeric(rng.normal(40.0, 12.0, 20_000)),
            "country": categorical(COUNTRIES, SHARES, 20_000),
            "device": categorical(["ios", "android"], [0.5, 0.5], 20_000),
        },
        **kwargs,
    )


def traffic(rng: np.random.Generator, n: int, *, income_shift: float, country_shares: list[float]) -> list[Any]:
    return records(
        {
            "income": rng.normal(50.0 + income_shift, 10.0, n).tolist(),
            "age": rng.normal(40.0, 12.0, n).tolist(),
            "country": rng.choice(COUNTRIES, n, p=country_shares).tolist(),
            "device": rng.choice(["ios", "android"], n).tolist(),
        }
    )


def test_shifted_and_rebalanced_features_are_flagged_and_the_others_are_not() -> None:
    rng = np.random.default_rng(2026)
    tracker = DriftTracker(reference_profile(rng), clock=FakeClock())
    # income: mean + 0.5 std; country: the last two categories swap places with the first two.
    tracker.update(traffic(rng, 5000, income_shift=5.0, country_shares=[0.1, 0.2, 0.3, 0.4]))
    snapshot = evaluate(tracker)
    verdicts = {f.name: (f.verdict, f.methods[1].verdict) for f in snapshot.features}
    assert verdicts == {
        "income": ("drift", "drift"),
        "age": ("no_drift", "no_drift"),
        "country": ("drift", "drift"),
        "device": ("no_drift", "no_drift"),
    }
    assert snapshot.drifted_share == 0.5
    assert snapshot.verdict == "no_drift"  # 0.5 does not exceed drift_share = 0.5


def test_the_dataset_drifts_when_the_drifted_share_exceeds_the_threshold() -> None:
    rng = np.random.default_rng(1)
    tracker = DriftTracker(reference_profile(rng), drift_share=0.3, clock=FakeClock())
    tracker.update(traffic(rng, 3000, income_shift=5.0, country_shares=[0.1, 0.2, 0.3, 0.4]))
    snapshot = evaluate(tracker)
    assert (snapshot.drifted_share, snapshot.drift_share, snapshot.verdict) == (0.5, 0.3, "drift")


def test_below_min_samples_there_is_no_verdict_and_no_number() -> None:
    rng = np.random.default_rng(3)
    tracker = DriftTracker(reference_profile(rng), min_samples=200, clock=FakeClock())
    tracker.update(traffic(rng, 199, income_shift=50.0, country_shares=[0.0, 0.0, 0.0, 1.0]))
    snapshot = evaluate(tracker)
    for feature in snapshot.features:
        assert feature.verdict == "insufficient_data"
        assert [(m.score, m.pvalue, m.corrected_pvalue, m.verdict) for m in feature.methods] == [
            (None, None, None, "insufficient_data")
        ] * 3
        assert feature.stats.count == 199  # the window's facts are still reported
    assert (snapshot.drifted_share, snapshot.verdict) == (None, "insufficient_data")
    tracker.update(traffic(rng, 1, income_shift=50.0, country_shares=[0.0, 0.0, 0.0, 1.0]))
    assert evaluate(tracker).feature("income").verdict == "drift"


def test_nulls_do_not_count_toward_min_samples() -> None:
    tracker = DriftTracker(profile({"x": numeric(np.arange(1000.0))}), min_samples=10, clock=FakeClock())
    tracker.update([record({"x": None})] * 50 + [record({"x": 5.0})] * 9)
    assert evaluate(tracker).feature("x").verdict == "insufficient_data"


def test_a_small_reference_gives_no_verdict_either() -> None:
    small = categorical(["a", "b"], [0.5, 0.5], count=150)
    tracker = DriftTracker(profile({"c": small}), min_samples=200, clock=FakeClock())
    tracker.update(records({"c": ["a"] * 1000}))
    assert evaluate(tracker).feature("c").verdict == "insufficient_data"


def test_weights_recover_the_shares_of_the_traffic() -> None:
    """Category "a" is sampled at p = 0.1, the others at 1: weights 1/p undo it."""
    rng = np.random.default_rng(8)
    population = rng.choice(COUNTRIES, 40_000, p=SHARES)
    kept = [
        record({"country": str(c)}, probability=0.1 if c == "FR" else 1.0)
        for c in population
        if c != "FR" or rng.random() < 0.1
    ]
    tracker = DriftTracker(profile({"country": categorical(COUNTRIES, SHARES, 20_000)}), clock=FakeClock())
    tracker.update(kept)
    country = evaluate(tracker).feature("country")
    assert country.current[:4] == pytest.approx(SHARES, abs=0.01)
    assert country.weight == pytest.approx(40_000, rel=0.03)
    assert country.verdict == "no_drift"
    # The effective sample size is far below the weighted count, and below the raw one.
    assert country.effective_samples < country.stats.count < country.weight


def test_outputs_and_labels_are_tracked_against_the_profile() -> None:
    rng = np.random.default_rng(4)
    outputs = {
        "prediction": categorical(["yes", "no"], [0.3, 0.7], 10_000),
        "confidence": numeric(rng.uniform(0.5, 1.0, 10_000)),
    }
    target = categorical(["yes", "no"], [0.3, 0.7], 10_000)
    clock = FakeClock()
    tracker = DriftTracker(reference_profile(rng, outputs=outputs, target=target), clock=clock)
    tracker.update(
        [
            record({}, prediction="yes", confidence=float(c))  # features missing: nulls
            for c in rng.uniform(0.5, 0.7, 500)
        ]
    )
    tracker.update_labels([("yes", 2.0)] * 150 + [("no", 2.0)] * 350)
    snapshot = evaluate(tracker)
    assert [o.name for o in snapshot.outputs] == ["prediction", "confidence"]
    assert all(o.verdict == "drift" for o in snapshot.outputs)
    assert snapshot.label is not None
    assert snapshot.label.current[:2] == pytest.approx([0.3, 0.7])
    assert snapshot.label.verdict == "no_drift"
    assert snapshot.label.weight == 1000.0
    assert all(f.stats.null_share == 1.0 for f in snapshot.features)


def test_what_the_profile_lacks_is_not_tracked() -> None:
    rng = np.random.default_rng(5)
    tracker = DriftTracker(reference_profile(rng), clock=FakeClock())
    assert (tracker.outputs, tracker.labels) == (None, None)
    tracker.update([record({"income": 1.0}, prediction="yes", confidence=0.9)])
    tracker.update_labels([("yes", 1.0)])  # no target: ignored
    snapshot = evaluate(tracker)
    assert (snapshot.outputs, snapshot.label) == ((), None)
    only_confidence = profile({"x": numeric(np.arange(300.0))}, outputs={"confidence": numeric(np.arange(300.0))})
    tracker = DriftTracker(only_confidence, clock=FakeClock())
    tracker.update([record({"x": 1.0}, prediction="yes", confidence=3.0)])
    assert [o.name for o in evaluate(tracker).outputs] == ["confidence"]


def test_the_window_slides_with_the_clock() -> None:
    rng = np.random.default_rng(6)
    clock = FakeClock(now=0.0)
    tracker = DriftTracker(reference_profile(rng), window_seconds=600, slice_seconds=60, clock=clock)
    tracker.update(traffic(rng, 1000, income_shift=20.0, country_shares=SHARES))
    clock.now = 300.0
    tracker.update(traffic(rng, 1000, income_shift=0.0, country_shares=SHARES))
    assert evaluate(tracker).feature("income").stats.count == 2000
    assert evaluate(tracker, now=599.0).feature("income").verdict == "drift"
    later = evaluate(tracker, now=600.0)  # the first slice has left the window
    assert later.feature("income").stats.count == 1000
    assert later.feature("income").verdict == "no_drift"
    assert (later.window_start, later.window_end) == (60.0, 660.0)
    assert evaluate(tracker, now=10_000.0).feature("income").stats.count == 0


def test_bin_observations_are_the_cumulative_weighted_counts() -> None:
    clock = FakeClock(now=0.0)
    tracker = DriftTracker(
        profile({"c": categorical(["a", "b"], [0.5, 0.5], 1000)}), window_seconds=60, slice_seconds=60, clock=clock
    )
    tracker.update([record({"c": "a"}, probability=0.5), record({"c": "zz"})])
    clock.now = 120.0  # past the window: the counters keep counting
    tracker.update([record({"c": "a"}, probability=0.25)])
    assert list(tracker.bin_observations()) == [
        ("feature", "c", "a", 6.0),
        ("feature", "c", "b", 0.0),
        ("feature", "c", "__other__", 1.0),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"slice_seconds": 0}, "slice_seconds"),
        ({"slice_seconds": float("nan")}, "slice_seconds"),
        ({"window_seconds": 90, "slice_seconds": 60}, "whole multiple"),
        ({"window_seconds": 30, "slice_seconds": 60}, "whole multiple"),
        ({"min_samples": 0}, "min_samples"),
        ({"drift_share": 1.0}, "drift_share"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DriftTracker(profile({"x": numeric(np.arange(10.0))}), **kwargs)


def test_records_are_counted_in_blocks_in_the_slice_they_arrived_in() -> None:
    rng = np.random.default_rng(3)
    clock = FakeClock(0.0)
    tracker = DriftTracker(reference_profile(rng), window_seconds=120, slice_seconds=60, clock=clock)
    assert tracker.features is not None
    early = traffic(rng, 10, income_shift=0.0, country_shares=SHARES)
    tracker.update(early)  # buffered, not yet counted
    clock.now = 61.0  # the next slice: the buffered records are counted in the first one
    tracker.update(traffic(rng, 5, income_shift=0.0, country_shares=SHARES))
    clock.now = 121.0  # the first slice has left the window
    snapshot = evaluate(tracker)  # reading flushes what is buffered
    assert {f.name: f.weight for f in snapshot.features}["income"] == 5.0
    assert sum(total for source, name, _, total in tracker.bin_observations() if name == "income") == 15


def test_a_table_given_by_columns_gets_the_verdicts_its_records_get() -> None:
    """update_columns (a batch job's table) against update (the same rows as records): the same snapshot."""
    rng = np.random.default_rng(12)
    reference = reference_profile(rng)
    rows = traffic(rng, 3000, income_shift=6.0, country_shares=[0.1, 0.2, 0.3, 0.4])
    by_records = DriftTracker(reference, clock=FakeClock())
    by_records.update(rows)
    by_columns = DriftTracker(reference, clock=FakeClock())
    columns = {name: [r.features[name] for r in rows] for name in ("age", "country", "device")}
    by_columns.update_columns(3000, {"income": np.array([r.features["income"] for r in rows]), **columns})
    expected, snapshot = evaluate(by_records), evaluate(by_columns)
    assert [f.name for f in snapshot.features if f.verdict == "drift"] == ["income", "country"]
    for mine, theirs in zip(snapshot.features, expected.features, strict=True):
        assert (mine.name, mine.verdict, mine.stats) == (theirs.name, theirs.verdict, theirs.stats)
        assert mine.current == pytest.approx(theirs.current, rel=1e-9)
        for method, same in zip(mine.methods, theirs.methods, strict=True):
            assert method.verdict == same.verdict
            assert [method.score, method.pvalue] == [
                None if v is None else pytest.approx(v, rel=1e-9) for v in (same.score, same.pvalue)
            ]
    assert (snapshot.drifted_share, snapshot.verdict) == (expected.drifted_share, expected.verdict)


def test_a_column_is_read_as_its_channel_reads_values_and_a_missing_one_is_null() -> None:
    rng = np.random.default_rng(13)
    outputs = {"prediction": categorical(["1", "0"], [0.5, 0.5], 1000)}
    tracker = DriftTracker(
        reference_profile(rng, outputs=outputs, target=numeric(rng.normal(0, 1, 1000))), clock=FakeClock()
    )
    tracker.update_columns(
        4,
        {"income": ["41.5", "x", None, "60"], "country": ["FR", None, "XX", "DE"]},  # numeric text is read as a number
        outputs={"prediction": np.array([1.0, 0.0, np.nan, 1.0])},  # numbers in a categorical channel: named
        labels=np.array([0.5, 1.5, np.nan, 0.1]),
    )
    features = tracker.features
    assert features is not None and tracker.outputs is not None and tracker.labels is not None
    totals = features.totals(tracker.clock())
    order = [c.name for c in features.channels]
    assert totals.nulls[order.index("income")] == 2.0
    assert totals.nulls[order.index("country")] == 1.0
    assert totals.nulls[order.index("age")] == totals.nulls[order.index("device")] == 4.0  # no column: all null
    assert totals.maximum[order.index("income")] == 60.0
    prediction = tracker.outputs.totals(tracker.clock()).counts.tolist()
    assert prediction == [2.0, 1.0, 0.0]  # "1", "0", unseen
    assert tracker.labels.totals(tracker.clock()).rows == 4


def test_records_still_buffered_are_counted_before_a_table() -> None:
    rng = np.random.default_rng(14)
    tracker = DriftTracker(reference_profile(rng), clock=FakeClock())
    tracker.update(traffic(rng, 10, income_shift=0.0, country_shares=SHARES))
    tracker.update_columns(5, {"income": np.full(5, 50.0)})
    assert tracker.features is not None
    assert tracker.features.totals(tracker.clock()).rows == 15


def test_numpy_columns_of_any_kind_are_read_like_lists() -> None:
    rng = np.random.default_rng(15)
    by_arrays, by_lists = (DriftTracker(reference_profile(rng), clock=FakeClock()) for _ in range(2))
    incomes, countries = ["41.5", "x", "60"], ["FR", "DE", "XX"]
    by_arrays.update_columns(3, {"income": np.array(incomes), "country": np.array(countries), "age": np.arange(3)})
    by_lists.update_columns(3, {"income": incomes, "country": countries, "age": np.array([0.0, 1.0, 2.0])})
    assert by_arrays.features is not None and by_lists.features is not None
    arrays, lists = by_arrays.features.totals(0.0), by_lists.features.totals(0.0)
    assert arrays.counts.tolist() == lists.counts.tolist()
    assert arrays.nulls.tolist() == lists.nulls.tolist()
