"""An experiment's side of the store, on both backends: business outcomes in, a metric's sums per arm out.

The sums are checked against a computation of their own here, from the
records and outcomes the test made (never read back from the database), in
plain Python and numpy: what an analysis unit is, which values it gets, its
segment and its periods, as ``sidecar/store/experiment.py`` defines them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from sidecar.experiments.outcomes import OutcomeItem
from sidecar.records import PredictionRecord
from sidecar.store import PredictionStore
from sidecar.store.experiment import MAX_PERIODS, SUMS, UnitSums, unit_sums
from tests.records import make_record
from tests.store.support import T0, Clock, Place, kinds, opened

pytestmark = pytest.mark.anyio

ARMS = ("control", "treatment")
PERIOD = 600.0


def exposure(
    request_id: str,
    variant: str,
    unit: str | None,
    *,
    row: int = 0,
    timestamp: float = T0,
    segment: str | None = None,
    model: str = "iris",
    prediction: Any = "a",
) -> PredictionRecord:
    return make_record(
        timestamp=timestamp,
        request_id=request_id,
        row=row,
        model_name=model,
        variant=variant,
        unit=unit,
        segment=segment,
        prediction=prediction,
        features={"user_id": unit},
    )


async def test_unit_and_segment_are_stored_with_the_prediction(place: Place) -> None:
    async with opened(place) as store:
        store.add([exposure("req-1", "treatment", "u-17", segment="de"), exposure("req-2", "control", None)])
        await store.flush()
    assert sorted(place.rows("SELECT request_id, variant, unit, segment FROM predictions")) == [
        ("req-1", "treatment", "u-17", "de"),
        ("req-2", "control", None, None),
    ]


async def test_outcomes_join_by_request_or_by_unit(place: Place) -> None:
    async with opened(place) as store:
        store.add([exposure("req-1", "control", "u-1", timestamp=T0)])
        store.add([exposure("req-2", "treatment", "u-2", timestamp=T0 + 1)])
        store.add([exposure("batch", "treatment", None, row=i, timestamp=T0 + 2) for i in range(3)])
        store.add([exposure("fallback", "primary", "u-9", timestamp=T0 + 3)])  # served outside the experiment
        outcomes = await store.attach_outcomes(
            "ranker-v2",
            [
                OutcomeItem("conversion", 1.0, None, None, "u-2"),
                OutcomeItem("revenue", 12.5, "req-1", None, None),  # row None: row 0 of a single-row request
                OutcomeItem("revenue", 3.0, "batch", 2, None),
                OutcomeItem("revenue", 4.0, "batch", None, None),  # which row of three?
                OutcomeItem("revenue", 5.0, "missing", None, None),
                OutcomeItem("conversion", 1.0, None, None, "u-404"),
                OutcomeItem("conversion", 1.0, None, None, "u-9"),  # its only prediction is not in an arm
                OutcomeItem("revenue", 1.0, "fallback", None, None),
                ("revenue", math.nan, "req-2", None, None, None),
                OutcomeItem("conversion", 0.0, None, None, "u-2"),  # again in the same batch: the first wins
            ],
            arms=ARMS,
        )
        assert kinds(outcomes) == [
            "joined", "joined", "joined", "invalid", "unmatched", "unmatched", "unmatched", "unmatched", "invalid",
            "duplicate",
        ]  # fmt: skip
        assert [o.variant for o in outcomes[:3]] == ["treatment", "control", "treatment"]
        assert outcomes[3].reason == "row required: request batch had 3 rows"
        assert outcomes[6].reason == "no stored prediction of the experiment's arms has that unit"
        assert outcomes[7].reason == "request fallback was served by 'primary', not an arm"
        assert outcomes[8].reason == "value must be a finite number"
        assert store.counts().outcomes == {"joined": 3, "unmatched": 4, "duplicate": 1, "invalid": 2}
        assert store.counts().labels == {"joined": 0, "unmatched": 0, "duplicate": 0, "invalid": 0}
    stored = place.rows(
        "SELECT experiment, metric, kind, key, row_index, value, model, variant, unit, exposed_at FROM outcomes"
    )
    assert sorted(stored) == [
        ("ranker-v2", "conversion", "unit", "u-2", 0, 1.0, "iris", "treatment", "u-2", T0 + 1),
        ("ranker-v2", "revenue", "request", "batch", 2, 3.0, "iris", "treatment", None, T0 + 2),
        ("ranker-v2", "revenue", "request", "req-1", 0, 12.5, "iris", "control", "u-1", T0),
    ]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (("revenue", 1.0, None, None, None, None), "expected exactly one of request_id and unit"),
        (("revenue", 1.0, "req-1", None, "u-1", None), "expected exactly one of request_id and unit"),
        (("", 1.0, "req-1", None, None, None), "metric must be a non-empty string"),
        (("revenue", True, "req-1", None, None, None), "value must be a finite number"),
        (("revenue", 1.0, "req-1", -1, None, None), "row must be a non-negative integer, or null; always null with"),
        (("revenue", 1.0, None, 0, "u-1", None), "row must be a non-negative integer, or null; always null with"),
        (("revenue", 1.0, "req-1", None, None, math.inf), "timestamp must be a finite number of Unix seconds"),
        (("revenue", 1.0, 7, None, None, None), "request_id must be a non-empty string"),
        (("revenue", 1.0), "expected (metric, value, request_id, row, unit, timestamp)"),
    ],
)
async def test_a_bad_outcome_is_invalid_and_spares_the_rest(place: Place, item: Any, reason: str) -> None:
    async with opened(place) as store:
        store.add([exposure("req-1", "control", "u-1")])
        outcomes = await store.attach_outcomes("x", [item, OutcomeItem("revenue", 2.0, "req-1", 0, None)], arms=ARMS)
        assert kinds(outcomes) == ["invalid", "joined"]
        assert outcomes[0].reason is not None and outcomes[0].reason.startswith(reason)


async def test_the_first_outcome_of_a_key_wins_and_experiments_keep_their_own(place: Place) -> None:
    async with opened(place) as store:
        store.add([exposure("req-1", "control", "u-1")])
        first = [OutcomeItem("revenue", 10.0, "req-1", None, None), OutcomeItem("conversion", 1.0, None, None, "u-1")]
        assert kinds(await store.attach_outcomes("exp-a", first, arms=ARMS)) == ["joined", "joined"]
        retried = [OutcomeItem("revenue", 99.0, "req-1", 0, None), OutcomeItem("conversion", 0.0, None, None, "u-1")]
        assert kinds(await store.attach_outcomes("exp-a", retried, arms=ARMS)) == ["duplicate", "duplicate"]
        # The same keys in another experiment, or another metric of this one, are outcomes of their own.
        assert kinds(await store.attach_outcomes("exp-b", retried, arms=ARMS)) == ["joined", "joined"]
        other = [OutcomeItem("clicks", 2.0, "req-1", None, None)]
        assert kinds(await store.attach_outcomes("exp-a", other, arms=ARMS)) == ["joined"]
        sums = await store.outcome_sums("exp-a", "revenue", ARMS, since=0, period_seconds=PERIOD, calendar=False)
        assert sums.total[0, 1] == 10.0  # the first value, not the retried one
    assert place.rows("SELECT count(*) FROM outcomes") == [(5,)]


async def test_a_unit_joins_the_arm_it_started_in(place: Place) -> None:
    # The weights changed mid-experiment: u-1 was in control, then in treatment. It is counted where it started.
    async with opened(place) as store:
        store.add([exposure("req-1", "primary", "u-1", timestamp=T0)])  # before the experiment: not an arm
        store.add([exposure("req-2", "control", "u-1", timestamp=T0 + 10)])
        store.add([exposure("req-3", "treatment", "u-1", timestamp=T0 + 20)])
        [outcome] = await store.attach_outcomes("x", [OutcomeItem("conversion", 1.0, None, None, "u-1")], arms=ARMS)
        assert (outcome.kind, outcome.variant) == ("joined", "control")
    assert place.rows("SELECT exposed_at FROM outcomes") == [(T0 + 20,)]  # its latest prediction in the arms


async def test_outcomes_go_with_the_predictions_they_joined(place: Place) -> None:
    clock = Clock(T0)
    async with opened(place, ttl_seconds=100, clock=clock) as store:
        store.add([exposure("req-1", "control", "u-1", timestamp=T0)])
        store.add([exposure("req-2", "control", "u-2", timestamp=T0 + 10)])
        store.add([exposure("req-3", "control", "u-2", timestamp=T0 + 50)])
        items = [
            OutcomeItem("revenue", 1.0, "req-1", None, None),
            OutcomeItem("conversion", 1.0, None, None, "u-1"),
            OutcomeItem("revenue", 2.0, "req-2", None, None),
            OutcomeItem("conversion", 1.0, None, None, "u-2"),
        ]
        assert kinds(await store.attach_outcomes("x", items, arms=ARMS)) == ["joined"] * 4
        clock.now = T0 + 120  # req-1 and req-2 pass the TTL; u-2 still has req-3
        assert await store.evict() == (2, 0)
        assert sorted(place.rows("SELECT kind, key, exposed_at FROM outcomes")) == [("unit", "u-2", T0 + 50)]
        clock.now = T0 + 200  # req-3 goes, and u-2's outcome with it
        assert await store.evict() == (1, 0)
        assert place.rows("SELECT count(*) FROM outcomes") == [(0,)]


async def test_outcomes_go_when_max_rows_evicts_their_predictions(place: Place) -> None:
    async with opened(place, max_rows=2) as store:
        store.add([exposure("req-1", "control", "u-1", timestamp=T0)])
        await store.flush()
        assert kinds(await store.attach_outcomes("x", [OutcomeItem("revenue", 1.0, "req-1", 0, None)], arms=ARMS)) == [
            "joined"
        ]
        for i in range(2, 4):
            store.add([exposure(f"req-{i}", "control", None, timestamp=T0 + i)])
        await store.flush()
        if place.url is not None:
            await store.evict()  # PostgreSQL's leader evicts in rounds; SQLite's writes do as they go
        assert store.counts().evicted["max_rows"] == 1
        assert place.rows("SELECT count(*) FROM outcomes") == [(0,)]


# The sums, against a computation of their own.


@dataclass
class Population:
    """The predictions a test wrote and the outcomes it posted, as it knows them."""

    records: list[PredictionRecord]
    outcomes: list[tuple[str, OutcomeItem]]  # (experiment, item), in the order posted


def make_population(seed: int) -> Population:
    """Units in two arms (and a third variant that is not an arm), some requests without a unit, batches,
    segments and periods, two models; outcomes by unit and by request, some unmatched or repeated."""
    rng = np.random.default_rng(seed)
    records: list[PredictionRecord] = []
    for i in range(240):
        unit = None if rng.random() < 0.15 else f"u-{int(rng.integers(30))}"
        if unit is None:
            variant = ARMS[int(rng.integers(2))]
        else:
            variant = ARMS[int(unit[2:]) % 2] if rng.random() > 0.05 else "primary"
        timestamp = T0 + 31.0 * i + float(rng.random())  # distinct times, about 12 periods of 600 s
        segment = [None, "de", "fr", "it"][int(rng.integers(4))]
        model = "iris" if rng.random() > 0.1 else "wine"
        rows = 1 if rng.random() < 0.8 else 2
        records += [
            exposure(f"req-{i}", variant, unit, row=r, timestamp=timestamp, segment=segment, model=model)
            for r in range(rows)
        ]
    outcomes: list[tuple[str, OutcomeItem]] = []
    for u in range(34):  # u-30 and above were never seen: unmatched
        if rng.random() < 0.5:
            outcomes.append(("exp", OutcomeItem("conversion", float(rng.integers(2)), None, None, f"u-{u}")))
    for record in records:
        if rng.random() < 0.3:
            item = OutcomeItem(
                "revenue", float(np.round(rng.exponential(20.0), 2)), record.request_id, record.row, None
            )
            outcomes.append(("exp", item))
        if rng.random() < 0.1:  # conversions posted by request too: the metric then mixes both keys
            outcomes.append(("exp", OutcomeItem("conversion", 1.0, record.request_id, record.row, None)))
        if rng.random() < 0.05:
            outcomes.append(("other", OutcomeItem("revenue", 1000.0, record.request_id, record.row, None)))
    outcomes += outcomes[:10]  # retried: duplicates, changing nothing
    return Population(records, outcomes)


def expected_units(population: Population, *, since: float, model: str | None) -> np.ndarray:
    keyed: dict[str, set[str]] = defaultdict(set)
    single: dict[str, set[str]] = defaultdict(set)
    for r in exposed(population, since, model):
        if r.unit is not None:
            keyed[r.variant].add(r.unit)
        else:
            single[r.variant].add(r.request_id)
    return np.array([[len(keyed[arm]), len(single[arm])] for arm in ARMS])


def exposed(population: Population, since: float, model: str | None) -> list[PredictionRecord]:
    return [
        r
        for r in population.records
        if r.variant in ARMS and r.timestamp >= since and (model is None or r.model_name == model)
    ]


def unit_of(record: PredictionRecord) -> tuple[str, bool, str]:
    """A record's analysis unit: its arm, whether it stands alone (no unit), and its key."""
    return record.variant, record.unit is None, record.unit if record.unit is not None else record.request_id


def expected_sums(
    population: Population, metric: str, *, since: float, model: str | None, calendar: bool
) -> tuple[dict[str | None, np.ndarray], np.ndarray, int, int]:
    """What outcome_sums should return: (segments, periods, by_request, by_unit), from the definitions."""
    window = sorted(exposed(population, since, model), key=lambda r: r.timestamp)
    first: dict[tuple[str, bool, str], PredictionRecord] = {}
    exposures: dict[tuple[str, bool, str], int] = defaultdict(int)
    for r in window:
        first.setdefault(unit_of(r), r)
        exposures[unit_of(r)] += 1
    # Which outcomes were stored: the first of each key that joined a prediction of the arms (any time, any model).
    by_key = {(r.request_id, r.row): r for r in population.records}
    arm_of_unit: dict[str, tuple[str, str]] = {}
    for r in sorted(population.records, key=lambda r: r.timestamp):
        if r.unit is not None and r.variant in ARMS:
            arm_of_unit.setdefault(r.unit, (r.variant, r.model_name))
    by_unit: dict[str, float] = {}
    by_request: dict[tuple[str, int], float] = {}
    for experiment, item in population.outcomes:
        if experiment != "exp" or item.metric != metric:
            continue
        if item.unit is not None:
            if item.unit in arm_of_unit:
                by_unit.setdefault(item.unit, item.value)
        elif (key := (str(item.request_id), int(item.row or 0))) in by_key and by_key[key].variant in ARMS:
            by_request.setdefault(key, item.value)
    y: dict[tuple[str, bool, str], float] = defaultdict(float)
    counted = {"request": 0, "unit": 0}
    attached: list[tuple[str, tuple[str, bool, str], float]] = []
    for name, value in by_unit.items():
        variant, unit_model = arm_of_unit[name]
        if model is None or unit_model == model:
            attached.append(("unit", (variant, False, name), value))
    per_exposure: dict[tuple[str, int], float] = defaultdict(float)
    for key, value in by_request.items():
        record = by_key[key]
        if record.timestamp >= since and (model is None or record.model_name == model):
            attached.append(("request", unit_of(record), value))
            per_exposure[key] += value
    for kind, unit, value in attached:
        if unit in first:
            y[unit] += value
            counted[kind] += 1
    segments: dict[str | None, np.ndarray] = {}
    for unit, r in first.items():
        x = exposures[unit]
        sums = segments.setdefault(r.segment, np.zeros((len(ARMS), len(SUMS))))
        sums[ARMS.index(unit[0])] += (1, y[unit], x, y[unit] ** 2, x * x, x * y[unit])
    origin = window[0].timestamp if window else 0.0
    pairs: dict[tuple[tuple[str, bool, str], int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in window:
        unit = unit_of(r)
        start = origin if calendar else first[unit].timestamp
        k = min(int((r.timestamp - start) // PERIOD), MAX_PERIODS - 1)
        pairs[unit, k][0] += per_exposure.get((r.request_id, r.row), 0.0)
        pairs[unit, k][1] += 1
    periods = np.zeros((max((k for _, k in pairs), default=-1) + 1, len(ARMS), len(SUMS)))
    for (unit, k), (py, px) in pairs.items():
        periods[k, ARMS.index(unit[0])] += (1, py, px, py * py, px * px, px * py)
    return segments, periods, counted["request"], counted["unit"]


def assert_sums_equal(actual: UnitSums, segments: dict[str | None, np.ndarray], periods: np.ndarray) -> None:
    assert set(actual.segments) == set(segments)
    for name, sums in segments.items():
        np.testing.assert_allclose(actual.segments[name], sums, rtol=1e-12, err_msg=f"segment {name}")
    np.testing.assert_allclose(actual.total, sum(segments.values()), rtol=1e-12)
    np.testing.assert_allclose(actual.periods, periods, rtol=1e-12)


async def stored(store: PredictionStore, population: Population) -> None:
    store.add(population.records)
    for experiment in ("exp", "other"):
        items = [item for name, item in population.outcomes if name == experiment]
        await store.attach_outcomes(experiment, items, arms=ARMS)


@pytest.mark.parametrize(
    ("since", "model", "calendar"),
    [(0.0, None, False), (T0 + 2000.0, None, False), (0.0, "iris", False), (T0 + 1000.0, "iris", True)],
)
async def test_outcome_sums_equal_a_computation_of_their_own(
    place: Place, since: float, model: str | None, calendar: bool
) -> None:
    population = make_population(7)
    async with opened(place, buffer_rows=1000) as store:
        await stored(store, population)
        for metric in ("conversion", "revenue"):
            sums = await store.outcome_sums(
                "exp", metric, ARMS, since=since, model=model, period_seconds=PERIOD, calendar=calendar
            )
            segments, periods, by_request, by_unit = expected_sums(
                population, metric, since=since, model=model, calendar=calendar
            )
            assert_sums_equal(sums, segments, periods)
            assert (sums.by_request, sums.by_unit) == (by_request, by_unit)
        units = await store.experiment_units(ARMS, since=since, model=model)
        np.testing.assert_array_equal(units, expected_units(population, since=since, model=model))
        # Every unit is in a segment, and the window's units are the sums' n.
        np.testing.assert_array_equal(sums.total[:, 0], units.sum(axis=1))


async def test_no_units_no_sums(place: Place) -> None:
    async with opened(place) as store:
        sums = await store.outcome_sums("exp", "revenue", ARMS, since=0, period_seconds=PERIOD, calendar=False)
        assert (dict(sums.segments), sums.periods.shape, sums.total.tolist()) == ({}, (0, 2, 6), [[0.0] * 6] * 2)
        rows = await store.labelled_exposures(ARMS, since=0, period_seconds=PERIOD, calendar=False)
        assert len(rows) == 0 and unit_sums(rows, np.zeros(0)).periods.shape == (0, 2, 6)
        assert (await store.experiment_units(ARMS, since=0)).tolist() == [[0, 0], [0, 0]]


@pytest.mark.parametrize(("since", "calendar"), [(0.0, False), (T0 + 3000.0, True)])
async def test_label_sums_equal_a_computation_of_their_own(place: Place, since: float, calendar: bool) -> None:
    population = make_population(11)
    rng = np.random.default_rng(3)
    labels = {(r.request_id, r.row): str(rng.choice(["a", "b", "c"])) for r in population.records if rng.random() < 0.6}
    from sidecar.store import LabelItem

    async with opened(place, buffer_rows=1000) as store:
        store.add(population.records)
        await store.attach_labels([LabelItem(rid, row, label) for (rid, row), label in labels.items()])
        rows = await store.labelled_exposures(ARMS, since=since, period_seconds=PERIOD, calendar=calendar)
    # Per row: 1 when the label is "a", 0 when "b", no value when "c".
    values = np.array([{"a": 1.0, "b": 0.0, "c": math.nan}[label] for label in rows.label])
    actual = unit_sums(rows, values)

    window = sorted(exposed(population, since, None), key=lambda r: r.timestamp)
    assert len(rows) == sum((r.request_id, r.row) in labels for r in window)
    first: dict[tuple[str, bool, str], PredictionRecord] = {}
    for r in window:
        first.setdefault(unit_of(r), r)
    origin = window[0].timestamp
    per_unit: dict[tuple[str, bool, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    pairs: dict[tuple[tuple[str, bool, str], int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in window:
        label = labels.get((r.request_id, r.row))
        if label is None or label == "c":
            continue
        unit, value = unit_of(r), 1.0 if label == "a" else 0.0
        k = int((r.timestamp - (origin if calendar else first[unit].timestamp)) // PERIOD)
        for accumulator in (per_unit[unit], pairs[unit, k]):
            accumulator[0] += value
            accumulator[1] += 1
    segments: dict[str | None, np.ndarray] = {}
    for unit, (y, x) in per_unit.items():
        sums = segments.setdefault(first[unit].segment, np.zeros((len(ARMS), len(SUMS))))
        sums[ARMS.index(unit[0])] += (1, y, x, y * y, x * x, x * y)
    periods = np.zeros((max(k for _, k in pairs) + 1, len(ARMS), len(SUMS)))
    for (unit, k), (y, x) in pairs.items():
        periods[k, ARMS.index(unit[0])] += (1, y, x, y * y, x * x, x * y)
    assert_sums_equal(actual, segments, periods)
    assert (actual.by_request, actual.by_unit) == (int(np.isfinite(values).sum()), 0)
