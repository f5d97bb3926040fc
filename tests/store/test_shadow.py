"""A shadow challenger's predictions in the store, on both backends: kept beside control's, paired with them and
their labels when read, evicted with them, bounded and counted like them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from sidecar.records import PredictionRecord
from sidecar.store import LabelItem, PredictionStore
from tests.records import make_record
from tests.store.support import T0, Clock, Place, kinds, opened

pytestmark = pytest.mark.anyio

EXPERIMENT = "ranker-v3"


def control(request_id: str, row: int = 0, *, timestamp: float = T0, prediction: Any = "a", **fields: Any) -> Any:
    return make_record(
        timestamp=timestamp,
        request_id=request_id,
        row=row,
        model_name="iris",
        variant="control",
        prediction=prediction,
        confidence=0.8,
        scores=[0.8, 0.2],
        features={"country": "DE"},
        **fields,
    )


def challenger(
    request_id: str, row: int = 0, *, timestamp: float = T0, prediction: Any = "b", confidence: float | None = 0.6
) -> PredictionRecord:
    return make_record(
        timestamp=timestamp,
        request_id=request_id,
        row=row,
        model_name="iris",
        variant="challenger",
        prediction=prediction,
        confidence=confidence,
        scores=None if confidence is None else [1 - confidence, confidence],
    )


async def written(store: PredictionStore, place: Place) -> None:
    await store.flush()
    if place.url is not None:
        await store.evict()  # PostgreSQL's writes never evict; its leader does, in rounds


async def test_the_challengers_rows_pair_with_controls_and_their_labels(place: Place) -> None:
    async with opened(place) as store:
        store.add([control("req-1"), control("req-2", prediction="b"), control("req-3")])
        store.add([control("batch", i, prediction=f"c{i}") for i in range(2)])
        store.add([control("early", timestamp=T0 - 10)])  # before the window
        store.add_shadow(EXPERIMENT, [challenger("req-1")])
        store.add_shadow(EXPERIMENT, [challenger("req-2", prediction="b", confidence=None)])
        store.add_shadow(EXPERIMENT, [challenger("batch", i, prediction=f"d{i}") for i in range(2)])
        store.add_shadow(EXPERIMENT, [challenger("early")])
        store.add_shadow(EXPERIMENT, [challenger("never-captured")])  # no prediction of control's to pair with
        store.add_shadow("another-experiment", [challenger("req-3")])
        assert kinds(await store.attach_labels([LabelItem("req-1", None, "a"), LabelItem("batch", 1, "d1")])) == [
            "joined",
            "joined",
        ]
        pairs = await store.shadow_pairs(EXPERIMENT, control="control", since=T0, model="iris")
        other_model = await store.shadow_pairs(EXPERIMENT, control="control", since=T0, model="wine")
    assert pairs.control_rows == 5 and len(pairs) == 4
    found = sorted(
        zip(
            pairs.control,
            pairs.challenger,
            pairs.control_scores,
            pairs.challenger_scores,
            pairs.control_confidence.tolist(),
            pairs.challenger_confidence.tolist(),
            pairs.label,
            pairs.labelled.tolist(),
            strict=True,
        ),
        key=str,
    )
    assert [row[:4] for row in found] == [
        ("a", "b", [0.8, 0.2], [0.4, 0.6]),
        ("b", "b", [0.8, 0.2], None),
        ("c0", "d0", [0.8, 0.2], [0.4, 0.6]),
        ("c1", "d1", [0.8, 0.2], [0.4, 0.6]),
    ]
    assert [row[4] for row in found] == [0.8] * 4
    challenger_confidence = [row[5] for row in found]
    assert challenger_confidence[0] == challenger_confidence[2] == 0.6 and math.isnan(challenger_confidence[1])
    assert [(row[6], row[7]) for row in found] == [("a", True), (None, False), (None, False), ("d1", True)]
    assert (other_model.control_rows, len(other_model)) == (0, 0)
    assert pairs.labelled.dtype == np.bool_ and pairs.control_confidence.dtype == np.float64


async def test_the_first_answer_of_a_key_is_kept(place: Place) -> None:
    async with opened(place) as store:
        store.add([control("req-1")])
        store.add_shadow(EXPERIMENT, [challenger("req-1", prediction="first")])
        await store.flush()
        store.add_shadow(EXPERIMENT, [challenger("req-1", prediction="second")])
        store.add_shadow(EXPERIMENT, [challenger("req-1", prediction="third")])
        pairs = await store.shadow_pairs(EXPERIMENT, control="control", since=T0)
    assert pairs.challenger == ["first"]
    assert place.rows("SELECT count(*) FROM shadow_predictions") == [(1,)]


async def test_the_challengers_rows_are_evicted_with_the_predictions_of_their_time(place: Place) -> None:
    clock = Clock(T0)
    async with opened(place, ttl_seconds=3600.0, clock=clock) as store:
        store.add([control("old", timestamp=T0)])
        store.add([control("new", timestamp=T0 + 1800)])
        store.add_shadow(EXPERIMENT, [challenger("old", timestamp=T0)])
        store.add_shadow(EXPERIMENT, [challenger("new", timestamp=T0 + 1800)])
        await written(store, place)
        assert place.rows("SELECT count(*) FROM shadow_predictions") == [(2,)]
        clock.now = T0 + 3700  # "old" is past the TTL, "new" is not
        store.add([control("newest", timestamp=T0 + 3650)])
        await written(store, place)
        pairs = await store.shadow_pairs(EXPERIMENT, control="control", since=0.0)
    assert sorted(place.rows("SELECT request_id FROM shadow_predictions")) == [("new",)]
    assert (pairs.control_rows, len(pairs)) == (2, 1)


async def test_what_the_buffer_cannot_take_is_counted_by_reason(place: Place) -> None:
    async with opened(place, buffer_rows=3) as store:
        store.add_shadow(EXPERIMENT, [challenger("req-1", i) for i in range(2)])
        store.add_shadow(EXPERIMENT, [challenger("req-2", i) for i in range(2)])  # refused whole: 2 + 2 > 3
        store.add_shadow(EXPERIMENT, [challenger("req-3")])
        assert store.counts().shadow_unstored == {"buffer_full": 2, "shutdown": 0, "failed": 0}
        # The predictions' own buffer and counters are not the challenger's.
        assert (store.counts().pending, store.counts().dropped["buffer_full"]) == (0, 0)
        await store.flush()
    assert place.rows("SELECT count(*) FROM shadow_predictions") == [(3,)]
    store.add_shadow(EXPERIMENT, [challenger("late")])  # after close
    assert store.counts().shadow_unstored == {"buffer_full": 2, "shutdown": 1, "failed": 0}


async def test_replicas_sharing_the_database_keep_one_answer_of_a_key(database: Place) -> None:
    other = Place(database.state_dir / "replica-b", database.url)
    async with opened(database) as a, opened(other) as b:
        a.add([control("req-1")])
        a.add_shadow(EXPERIMENT, [challenger("req-1", prediction="from-a")])
        await a.flush()
        b.add_shadow(EXPERIMENT, [challenger("req-1", prediction="from-b")])
        await b.flush()
        # Either replica reads the fleet's pairs.
        pairs = await b.shadow_pairs(EXPERIMENT, control="control", since=T0)
    assert (pairs.control_rows, pairs.challenger) == (1, ["from-a"])
