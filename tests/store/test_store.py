"""The prediction store's contract, run against both backends: SQLite files and a PostgreSQL database.

Where the backends differ on purpose, the test says so: PostgreSQL dates
labels by the database's clock (one clock for the fleet), and its writes
do not evict (the leader does, in rounds).
"""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

import sidecar.store
from sidecar.records import PredictionRecord
from sidecar.store import FILENAME, Estimate, LabelItem, PredictionStore
from tests.records import make_record
from tests.store.support import T0, Clock, Place, kinds, opened, record, request
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio


async def settle(store: PredictionStore, place: Place) -> None:
    """Write the buffer, and evict as that backend would have by now.

    SQLite evicts with every batch it writes; PostgreSQL's writes do not evict,
    its leader does, in rounds: one round is run here.
    """
    await store.flush()
    if place.url is not None:
        await store.evict()


def test_the_package_exports() -> None:
    assert sidecar.store.__all__ == [
        "DEFAULT_BATCH_ROWS",
        "DEFAULT_BUFFER_BYTES",
        "DEFAULT_BUFFER_ROWS",
        "DEFAULT_FLUSH_SECONDS",
        "DEFAULT_LEADER_INTERVAL",
        "DEFAULT_MAX_ROWS",
        "DEFAULT_TTL_SECONDS",
        "FILENAME",
        "OUTCOMES",
        "Coverage",
        "Estimate",
        "LabelItem",
        "Labelled",
        "Outcome",
        "OutcomeKind",
        "PredictionStore",
        "ShadowPairs",
        "StoreCounts",
        "StoreError",
    ]
    for name in sidecar.store.__all__:
        assert getattr(sidecar.store, name) is not None


async def test_add_flush_and_query(place: Place) -> None:
    clock = Clock(T0 + 7200)
    async with opened(place, segment_features=("country", "device"), clock=clock) as store:
        store.add([record("req-1", timestamp=T0)])
        store.add(request("req-2", 2, timestamp=T0 + 60))
        assert store.counts().pending == 3
        await store.flush()
        assert (store.counts().pending, store.counts().rows) == (0, 3)
        assert await store.coverage(since=0) == (3, 0)

        [outcome] = await store.attach_labels([LabelItem("req-1", None, "versicolor", T0 + 3600)])
        assert outcome.kind == "joined" and outcome.joined is not None
        joined = outcome.joined
        assert (joined.request_id, joined.row, joined.timestamp) == ("req-1", 0, T0)
        assert (joined.model, joined.version, joined.variant) == ("iris", "3", "primary")
        assert (joined.prediction, joined.scores, joined.weight) == ("setosa", [0.9, 0.06, 0.04], 4.0)
        assert joined.segments == {"country": "DE", "device": None}  # configured, absent from the request
        assert (joined.label, joined.label_timestamp) == ("versicolor", T0 + 3600)
        if place.url is None:
            assert joined.labelled_at == T0 + 7200  # the store's clock
            assert joined.delay == 7200
        else:
            assert abs(joined.labelled_at - time.time()) < 60  # the database's clock, the one the fleet shares
            assert joined.delay == joined.labelled_at - T0

        assert await store.labelled(since=0) == [joined]
        assert await store.coverage(since=0) == (3, 1)
    # Only the segment features reach the database, never the rest of the feature dict.
    if place.url is None:
        assert b"alice@example.com" not in (place.state_dir / FILENAME).read_bytes()
    else:
        stored = place.rows("SELECT p::text FROM predictions AS p")
        assert len(stored) == 3 and not any("alice@example.com" in text for (text,) in stored)


async def test_the_background_writer_flushes_on_its_own(place: Place) -> None:
    async with opened(place, flush_seconds=0.01) as store:
        store.add([record("req-1")])
        await wait_until(lambda: store.counts().rows == 1)
    async with opened(place, batch_rows=2) as store:
        store.add(request("req-2", 2))  # a full batch wakes the writer before its interval
        await wait_until(lambda: store.counts().rows == 3)


async def test_outcomes_of_a_label_batch(place: Place) -> None:
    async with opened(place) as store:
        store.add([record("single")])
        store.add(request("batch", 3))
        outcomes = await store.attach_labels(
            [
                LabelItem("single", None, "a"),  # row None: row 0 of a single-row request
                LabelItem("batch", 2, "b"),
                LabelItem("batch", None, "c"),  # row None on a batch request: which row?
                LabelItem("batch", 7, "d"),
                LabelItem("missing", None, "e"),
                LabelItem("single", 0, "f"),  # already labelled earlier in this batch: the first wins
            ]
        )
        assert kinds(outcomes) == ["joined", "joined", "invalid", "unmatched", "unmatched", "duplicate"]
        assert outcomes[2].reason == "row required: request batch had 3 rows"
        assert [(o.joined.request_id, o.joined.row) for o in outcomes if o.joined] == [("single", 0), ("batch", 2)]
        labels = store.counts().labels
        assert labels == {"joined": 2, "unmatched": 2, "duplicate": 1, "invalid": 1}


async def test_row_none_on_a_request_whose_only_row_is_not_row_0_is_unmatched(place: Place) -> None:
    async with opened(place) as store:
        store.add([record("odd", 1)])  # its row 0 was never captured
        outcomes = await store.attach_labels([LabelItem("odd", None, "a"), LabelItem("odd", 1, "b")])
        assert kinds(outcomes) == ["unmatched", "joined"]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (LabelItem("", 0, "a"), "request_id must be a non-empty string"),
        ((7, 0, "a", None), "request_id must be a non-empty string"),
        (LabelItem("req-1", True, "a"), "row must be a non-negative integer or null"),
        (LabelItem("req-1", -1, "a"), "row must be a non-negative integer or null"),
        (LabelItem("req-1", 0, None), "label is missing or not a finite value"),
        (LabelItem("req-1", 0, math.nan), "label is missing or not a finite value"),
        (LabelItem("req-1", 0, object()), "label is not a JSON value"),
        (LabelItem("req-1", 0, "a", math.inf), "timestamp must be a finite number of Unix seconds or null"),
        (LabelItem("req-1", 0, "a", "yesterday"), "timestamp must be a finite number of Unix seconds or null"),  # type: ignore[arg-type]
        (("req-1", 0), "expected (request_id, row, label, timestamp)"),
    ],
)
async def test_bad_items_are_invalid_and_spare_the_rest(place: Place, item: Any, reason: str) -> None:
    async with opened(place) as store:
        store.add([record("req-1"), record("req-2")])
        outcomes = await store.attach_labels([item, LabelItem("req-2", 0, {"class": "a", "p": [1, 2]})])
        assert kinds(outcomes) == ["invalid", "joined"]
        assert outcomes[0].reason == reason
        assert (await store.labelled(since=0))[0].label == {"class": "a", "p": [1, 2]}


async def test_items_no_prediction_can_match_are_unmatched_and_spare_the_rest(place: Place) -> None:
    # A row past any batch's size, a NUL character: a database that cannot even hold them must not fail the batch.
    async with opened(place) as store:
        store.add([record("req-1")])
        items = [LabelItem("req-1", 2**40, "a"), LabelItem("req\x00-1", 0, "b"), LabelItem("req-1", 0, "c")]
        assert kinds(await store.attach_labels(items)) == ["unmatched", "unmatched", "joined"]


async def test_a_duplicate_label_changes_nothing(place: Place) -> None:
    clock = Clock()
    async with opened(place, clock=clock) as store:
        store.add([record("req-1")])
        assert kinds(await store.attach_labels([LabelItem("req-1", 0, "setosa", T0 + 5)])) == ["joined"]
        before = await store.labelled(since=0)
        clock.now += 3600
        retried = [LabelItem("req-1", 0, "setosa", T0 + 5), LabelItem("req-1", None, "virginica", T0 + 99)]
        assert kinds(await store.attach_labels(retried)) == ["duplicate", "duplicate"]
        assert await store.labelled(since=0) == before  # label, its timestamp and labelled_at all kept
        assert await store.coverage(since=0) == (1, 1)
        assert store.counts().labels["joined"] == 1


async def test_labels_out_of_order(place: Place) -> None:
    async with opened(place) as store:
        # A label that overtakes its prediction is unmatched; posted again later, it joins.
        early = LabelItem("req-9", None, "a")
        assert kinds(await store.attach_labels([early])) == ["unmatched"]
        for i in range(10):
            store.add([record(f"req-{i}", timestamp=T0 + i)])
        # Nothing flushed yet: the labels are joined after the buffered predictions are written.
        assert store.counts().pending == 10
        reversed_labels = [LabelItem(f"req-{i}", None, str(i), T0 - i) for i in reversed(range(9))]
        assert kinds(await store.attach_labels(reversed_labels)) == ["joined"] * 9
        assert kinds(await store.attach_labels([early])) == ["joined"]
        joined = await store.labelled(since=0)
        assert [j.request_id for j in joined] == [f"req-{i}" for i in range(10)]  # by prediction time
        assert [j.label for j in joined] == [*map(str, range(9)), "a"]


async def test_windows_are_over_prediction_time(place: Place) -> None:
    clock = Clock(T0 + 86400)
    async with opened(place, clock=clock) as store:
        store.add([record("old", timestamp=T0)])
        store.add([record("new", timestamp=T0 + 3600)])
        store.add([record("other", timestamp=T0 + 3600, model="wine")])
        store.add([record("unlabelled", timestamp=T0 + 3600)])
        # The old prediction's label arrives last; it still belongs to the old window.
        await store.attach_labels([LabelItem("new", 0, "a"), LabelItem("other", 0, "b")])
        clock.now += 60
        await store.attach_labels([LabelItem("old", 0, "c")])
        assert [j.request_id for j in await store.labelled(since=T0 + 1800)] == ["new", "other"]
        assert [j.request_id for j in await store.labelled(since=T0 + 1800, model="wine")] == ["other"]
        assert [j.request_id for j in await store.labelled(since=T0)] == ["old", "new", "other"]
        assert await store.coverage(since=T0 + 1800) == (3, 2)
        assert await store.coverage(since=T0 + 1800, model="iris") == (2, 1)
        assert await store.coverage(since=T0) == (4, 3)


async def test_the_label_marker_moves_only_when_the_labelled_window_changes(place: Place) -> None:
    clock = Clock(T0 + 100)
    async with opened(place, clock=clock, ttl_seconds=1000) as store:
        for i in range(4):
            store.add([record(f"req-{i}", timestamp=T0 + i)])
        empty = await store.label_marker(since=T0, model="iris")
        assert empty == (0, 0)
        await store.attach_labels([LabelItem("req-0", 0, "a"), LabelItem("req-2", 0, "b")])
        two = await store.label_marker(since=T0, model="iris")
        assert two[0] == 2 and two != empty
        # Nothing labelled, something unlabelled written, a duplicate refused: the marker stays.
        store.add([record("req-9", timestamp=T0 + 9)])
        await store.attach_labels([LabelItem("req-0", 0, "again")])
        assert await store.label_marker(since=T0, model="iris") == two
        assert await store.label_marker(since=T0, model="wine") == (0, 0)
        # A label joins as another leaves the window: the count is the same, the marker is not.
        await store.attach_labels([LabelItem("req-3", 0, "c")])
        moved = await store.label_marker(since=T0 + 1, model="iris")
        assert moved[0] == 2 and moved != two
        # Eviction takes a labelled prediction: it moves again.
        before = await store.label_marker(since=0, model="iris")
        clock.now = T0 + 1000.5  # req-0 (T0) is past the TTL
        assert await store.evict() == (1, 0)
        after = await store.label_marker(since=0, model="iris")
        assert (before[0], after[0]) == (3, 2)


async def test_the_estimated_accuracy_is_the_weighted_mean_confidence_per_variant(place: Place) -> None:
    async with opened(place) as store:
        store.add([record("a", confidence=0.9)])
        store.add([make_record(timestamp=T0, request_id="b", model_name="iris", confidence=0.6, probability=0.5)])
        store.add([record("c", confidence=None), record("d", confidence=math.nan), record("e", confidence=1.5)])
        store.add([record("f", confidence=0.7, variant="challenger"), record("g", model="wine", confidence=0.1)])
        estimated = await store.estimated(since=0, model="iris")
        # a: weight 4 (p = 0.25) at 0.9; b: weight 2 at 0.6; c, d and e have no usable confidence.
        assert estimated.keys() == {"primary", "challenger"}
        primary = estimated["primary"]
        assert (primary.weight, primary.predictions) == (6.0, 2)
        assert primary.confidence == pytest.approx((4 * 0.9 + 2 * 0.6) / 6, abs=1e-12)
        assert estimated["challenger"] == Estimate(pytest.approx(0.7), 4.0, 1)  # type: ignore[arg-type]
        assert (await store.estimated(since=T0 + 1, model="iris")) == {}
        assert (await store.estimated(since=0))["primary"].predictions == 3  # every model


async def test_a_store_alone_leads_and_is_available(place: Place) -> None:
    async with opened(place) as store:
        assert store.is_leader and store.available
        if place.url is None:
            assert store.location == str(store.path) == str(place.state_dir / FILENAME)
        else:
            password = urlsplit(place.url).password
            assert store.path is None and password and password not in store.location
            assert store.location == place.url.replace(password, "***")


async def test_labels_still_join_after_a_restart(place: Place) -> None:
    async with opened(place, segment_features=("country",)) as store:
        store.add(request("req-1", 2))
        store.add([record("req-2")])
        await store.attach_labels([LabelItem("req-1", 0, "a")])
    async with opened(place, segment_features=("country",)) as store:
        assert store.counts().rows == 3
        outcomes = await store.attach_labels(
            [LabelItem("req-1", 1, "b"), LabelItem("req-2", None, "c"), LabelItem("req-1", 0, "z")]
        )
        assert kinds(outcomes) == ["joined", "joined", "duplicate"]
        assert outcomes[1].joined is not None and outcomes[1].joined.segments == {"country": "DE"}
        assert [j.label for j in await store.labelled(since=0)] == ["a", "b", "c"]


async def test_ttl_evicts_the_oldest_and_counts_them(place: Place) -> None:
    clock = Clock(T0)
    async with opened(place, ttl_seconds=100, clock=clock) as store:
        for i in range(5):
            store.add([record(f"req-{i}", timestamp=T0 + 10 * i)])
        await store.flush()
        clock.now = T0 + 120  # req-0 (T0) and req-1 (T0 + 10) are past the TTL; req-2 (T0 + 20) is just within
        assert await store.evict() == (2, 0)
        counts = store.counts()
        assert (counts.rows, counts.evicted) == (3, {"ttl": 2, "max_rows": 0})
        outcomes = await store.attach_labels([LabelItem("req-1", 0, "a"), LabelItem("req-3", 0, "b")])
        assert kinds(outcomes) == ["unmatched", "joined"]
        # Eviction runs again as time passes (with SQLite, with the next batch written): req-2 goes.
        clock.now = T0 + 125
        store.add([record("req-new", timestamp=clock.now)])
        await settle(store, place)
        assert store.counts().evicted["ttl"] == 3
        assert await store.coverage(since=0) == (3, 1)


async def test_max_rows_evicts_the_oldest_by_prediction_time(place: Place) -> None:
    async with opened(place, max_rows=5) as store:
        # Written out of time order: eviction follows the prediction time, not the insertion order.
        for i in (3, 0, 7, 5, 1, 6, 2, 4):
            store.add([record(f"req-{i}", timestamp=T0 + i)])
        await settle(store, place)
        counts = store.counts()
        assert (counts.rows, counts.evicted) == (5, {"ttl": 0, "max_rows": 3})
        labels = [LabelItem(f"req-{i}", 0, "x") for i in range(8)]
        assert kinds(await store.attach_labels(labels)) == ["unmatched"] * 3 + ["joined"] * 5


async def test_a_repeated_request_id_keeps_the_first_prediction(place: Place) -> None:
    async with opened(place) as store:
        store.add([record("req-1", timestamp=T0)])
        store.add([record("req-1", timestamp=T0 + 5)])
        await store.flush()
        assert (store.counts().rows, store.counts().conflicts) == (1, 1)
        [outcome] = await store.attach_labels([LabelItem("req-1", 0, "a")])
        assert outcome.joined is not None and outcome.joined.timestamp == T0


async def test_a_full_buffer_drops_whole_exchanges_and_counts_them(place: Place) -> None:
    async with opened(place, buffer_rows=10, batch_rows=100) as store:
        for i in range(4):
            store.add(request(f"req-{i}", 3))  # 3 + 3 + 3 fit; the fourth would make 12
        store.add([record("req-last")])  # one row still fits
        assert (store.counts().pending, store.counts().dropped["buffer_full"]) == (10, 3)
        await store.flush()
        assert store.counts().rows == 10
        store.add(request("req-after", 3))  # room again once written
        assert store.counts().dropped["buffer_full"] == 3


async def test_several_exchanges_in_one_call_are_dropped_exchange_by_exchange(place: Place) -> None:
    # The monitor hands over the records of many exchanges at once; only those that do not fit go.
    async with opened(place, buffer_rows=10, batch_rows=100) as store:
        store.add(request("req-0", 6))
        store.add([*request("req-1", 3), *request("req-2", 2), *request("req-3", 1)])
        assert (store.counts().pending, store.counts().dropped["buffer_full"]) == (10, 2)
        await store.flush()
        assert sorted(row[0] for row in place.rows("SELECT DISTINCT request_id FROM predictions")) == [
            "req-0",
            "req-1",
            "req-3",
        ]


async def test_a_buffer_full_in_bytes_drops_whole_exchanges_and_counts_them(place: Place) -> None:
    def long(request_id: str) -> list[PredictionRecord]:
        # Two rows of a generated-text model: 50 kB of prediction each, where rows alone would take them all.
        return [make_record(timestamp=T0, request_id=request_id, row=i, prediction="t" * 50_000) for i in range(2)]

    async with opened(place, buffer_rows=10_000, buffer_bytes=1 << 20, batch_rows=100_000) as store:
        for i in range(40):  # 4 MB offered to a 1 MiB buffer that nothing writes yet
            store.add(long(f"req-{i}"))
            assert store.pending_bytes <= 1 << 20
        counts = store.counts()
        assert (counts.pending, counts.dropped["buffer_full"]) == (20, 60)  # 10 exchanges fit, with their overhead
        await store.flush()
        assert (store.counts().rows, store.pending_bytes) == (20, 0)
        store.add(long("req-after"))  # room again once written
        assert store.counts().pending == 2


async def test_one_exchange_larger_than_the_byte_bound_still_passes_an_empty_buffer(place: Place) -> None:
    async with opened(place, buffer_bytes=10_000) as store:
        store.add([make_record(timestamp=T0, request_id="big", prediction="t" * 20_000)])
        store.add([record("next")])  # the buffer is over its bound until the big one is written
        assert (store.counts().pending, store.counts().dropped["buffer_full"]) == (1, 1)
        await store.flush()
        store.add([record("next")])
        assert store.counts().pending == 1


async def test_the_buffer_holds_the_encoded_row_not_the_feature_dict(place: Place) -> None:
    # Only the segment features are stored, so only they may count against the buffer.
    async with opened(place, segment_features=("country",)) as store:
        store.add([record("req-1", features={"country": "DE", "notes": "n" * 1_000_000})])
        assert 0 < store.pending_bytes < 2_000
        # A record that cannot be encoded (p = 0 has no weight) costs its own row only.
        store.add([record("req-2"), make_record(timestamp=T0, request_id="req-2", row=1, probability=0.0)])
        assert (store.counts().pending, store.counts().failed) == (2, 1)
        await store.flush()
        assert (store.counts().rows, store.counts().failed, store.pending_bytes) == (2, 1, 0)


async def test_missing_values_are_stored_as_null(place: Place) -> None:
    async with opened(place) as store:
        store.add([make_record(timestamp=T0, request_id="bare", model_version=None, scores=None, features={"x": 1})])
        store.add([make_record(timestamp=T0, request_id="zero", model_version="0", scores=[0.0, 1.0], prediction=0)])
        store.add([make_record(timestamp=T0, request_id="sure", confidence=0.0)])  # a confidence of 0 is one
        await store.flush()
        if place.url is None:
            rows = place.rows(
                "SELECT request_id, version, typeof(version), scores, typeof(segments), prediction, confidence"
                " FROM predictions ORDER BY request_id"
            )
            assert rows == [
                ("bare", None, "null", None, "null", "null", None),
                ("sure", None, "null", None, "null", "null", 0.0),
                ("zero", "0", "text", "[0.0,1.0]", "null", "0", None),
            ]
        else:
            rows = place.rows(
                "SELECT request_id, version, scores, segments IS NULL, prediction, confidence"
                " FROM predictions ORDER BY request_id"
            )
            assert rows == [
                ("bare", None, None, True, "null", None),
                ("sure", None, None, True, "null", 0.0),
                ("zero", "0", "[0.0,1.0]", True, "0", None),
            ]
        [bare] = await store.attach_labels([LabelItem("bare", None, 1)])
        assert bare.joined is not None
        assert (bare.joined.version, bare.joined.scores, bare.joined.segments) == (None, None, {})


async def test_a_batch_is_inserted_whole_in_statements_of_every_size(place: Place) -> None:
    async with opened(place, batch_rows=1000) as store:
        store.add([record(f"req-{i}") for i in range(127)])  # 64 + 32 + 16 + 8 + 4 + 2 + 1
        store.add([record("req-5")])  # a repeat: a conflict, not a second row
        await store.flush()
        assert (store.counts().rows, store.counts().conflicts) == (127, 1)
        assert place.rows("SELECT count(DISTINCT request_id), min(weight), max(weight) FROM predictions") == [
            (127, 4.0, 4.0)
        ]


async def test_close_writes_the_buffer(place: Place) -> None:
    async with opened(place) as store:
        store.add(request("req-1", 3))
        assert store.counts().pending == 3
    assert place.rows("SELECT count(*) FROM predictions") == [(3,)]
    assert store.counts().dropped == {"buffer_full": 0, "shutdown": 0}
    store.add([record("req-late")])  # after close: counted, never raised
    assert store.counts().dropped["shutdown"] == 1
    with pytest.raises(sidecar.store.StoreError, match="is closed"):
        await store.labelled(since=0)
    await store.close(0.0)  # a second close does nothing


@pytest.mark.parametrize(
    "options",
    [
        {"ttl_seconds": 0},
        {"ttl_seconds": math.inf},
        {"max_rows": 0},
        {"buffer_rows": 0},
        {"buffer_bytes": 0},
        {"flush_seconds": 0},
        {"leader_interval": math.nan},
    ],
)
def test_settings_are_checked(tmp_path: Any, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        PredictionStore(tmp_path, **options)
