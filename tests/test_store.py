"""The prediction store against real SQLite files in a temporary directory."""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from sidecar.exceptions import SidecarError
from sidecar.records import PredictionRecord
from sidecar.store import FILENAME, LabelItem, Outcome, PredictionStore, StoreError
from tests.records import make_record

pytestmark = pytest.mark.anyio

T0 = 1_764_144_638.0  # 2025-11-26T08:10:38Z
SLOW = 3600.0  # a flush interval no test waits for: writes happen when the test says


class Clock:
    """Unix seconds that a test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(
    request_id: str,
    row: int = 0,
    *,
    timestamp: float = T0,
    model: str = "iris",
    features: dict[str, Any] | None = None,
) -> PredictionRecord:
    return make_record(
        timestamp=timestamp,
        request_id=request_id,
        row=row,
        model_name=model,
        model_version="3",
        features={"country": "DE", "email": "alice@example.com"} if features is None else features,
        prediction="setosa",
        confidence=0.9,
        scores=[0.9, 0.06, 0.04],
        latency_ms=4.2,
        probability=0.25,
    )


def request(request_id: str, rows: int, *, timestamp: float = T0) -> list[PredictionRecord]:
    return [record(request_id, i, timestamp=timestamp) for i in range(rows)]


@asynccontextmanager
async def opened(state_dir: Path, **options: Any) -> AsyncIterator[PredictionStore]:
    options.setdefault("flush_seconds", SLOW)
    options.setdefault("clock", Clock())
    store = PredictionStore(state_dir, **options)
    await store.start()
    try:
        yield store
    finally:
        await store.close(asyncio.get_running_loop().time() + 5.0)


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold the file's write lock from another connection, as a second process sharing the directory would."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def kinds(outcomes: list[Outcome]) -> list[str]:
    return [outcome.kind for outcome in outcomes]


async def test_add_flush_and_query(tmp_path: Path) -> None:
    clock = Clock(T0 + 7200)
    async with opened(tmp_path, segment_features=("country", "device"), clock=clock) as store:
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
        assert (joined.label, joined.label_timestamp, joined.labelled_at) == ("versicolor", T0 + 3600, T0 + 7200)
        assert joined.delay == 7200

        assert await store.labelled(since=0) == [joined]
        assert await store.coverage(since=0) == (3, 1)
    # Only the segment features reach the disk, never the rest of the feature dict.
    assert b"alice@example.com" not in (tmp_path / FILENAME).read_bytes()


async def test_the_background_writer_flushes_on_its_own(tmp_path: Path) -> None:
    async with opened(tmp_path, flush_seconds=0.01) as store:
        store.add([record("req-1")])
        await wait_until(lambda: store.counts().rows == 1)
    async with opened(tmp_path, batch_rows=2) as store:
        store.add(request("req-2", 2))  # a full batch wakes the writer before its interval
        await wait_until(lambda: store.counts().rows == 3)


async def test_outcomes_of_a_label_batch(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
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
async def test_bad_items_are_invalid_and_spare_the_rest(tmp_path: Path, item: Any, reason: str) -> None:
    async with opened(tmp_path) as store:
        store.add([record("req-1"), record("req-2")])
        outcomes = await store.attach_labels([item, LabelItem("req-2", 0, {"class": "a", "p": [1, 2]})])
        assert kinds(outcomes) == ["invalid", "joined"]
        assert outcomes[0].reason == reason
        assert (await store.labelled(since=0))[0].label == {"class": "a", "p": [1, 2]}


async def test_a_duplicate_label_changes_nothing(tmp_path: Path) -> None:
    clock = Clock()
    async with opened(tmp_path, clock=clock) as store:
        store.add([record("req-1")])
        assert kinds(await store.attach_labels([LabelItem("req-1", 0, "setosa", T0 + 5)])) == ["joined"]
        before = await store.labelled(since=0)
        clock.now += 3600
        retried = [LabelItem("req-1", 0, "setosa", T0 + 5), LabelItem("req-1", None, "virginica", T0 + 99)]
        assert kinds(await store.attach_labels(retried)) == ["duplicate", "duplicate"]
        assert await store.labelled(since=0) == before  # label, its timestamp and labelled_at all kept
        assert await store.coverage(since=0) == (1, 1)
        assert store.counts().labels["joined"] == 1


async def test_labels_out_of_order(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
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


async def test_windows_are_over_prediction_time(tmp_path: Path) -> None:
    clock = Clock(T0 + 86400)
    async with opened(tmp_path, clock=clock) as store:
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


async def test_labels_still_join_after_a_restart(tmp_path: Path) -> None:
    async with opened(tmp_path, segment_features=("country",)) as store:
        store.add(request("req-1", 2))
        store.add([record("req-2")])
        await store.attach_labels([LabelItem("req-1", 0, "a")])
    async with opened(tmp_path, segment_features=("country",)) as store:
        assert store.counts().rows == 3
        outcomes = await store.attach_labels(
            [LabelItem("req-1", 1, "b"), LabelItem("req-2", None, "c"), LabelItem("req-1", 0, "z")]
        )
        assert kinds(outcomes) == ["joined", "joined", "duplicate"]
        assert outcomes[1].joined is not None and outcomes[1].joined.segments == {"country": "DE"}
        assert [j.label for j in await store.labelled(since=0)] == ["a", "b", "c"]


async def test_ttl_evicts_the_oldest_and_counts_them(tmp_path: Path) -> None:
    clock = Clock(T0)
    async with opened(tmp_path, ttl_seconds=100, clock=clock) as store:
        for i in range(5):
            store.add([record(f"req-{i}", timestamp=T0 + 10 * i)])
        await store.flush()
        clock.now = T0 + 120  # req-0 (T0) and req-1 (T0 + 10) are past the TTL; req-2 (T0 + 20) is just within
        assert await store.evict() == (2, 0)
        counts = store.counts()
        assert (counts.rows, counts.evicted) == (3, {"ttl": 2, "max_rows": 0})
        outcomes = await store.attach_labels([LabelItem("req-1", 0, "a"), LabelItem("req-3", 0, "b")])
        assert kinds(outcomes) == ["unmatched", "joined"]
        # Writing evicts too: a new batch takes req-2 with it.
        clock.now = T0 + 125
        store.add([record("req-new", timestamp=clock.now)])
        await store.flush()
        assert store.counts().evicted["ttl"] == 3
        assert await store.coverage(since=0) == (3, 1)


async def test_max_rows_evicts_the_oldest_by_prediction_time(tmp_path: Path) -> None:
    async with opened(tmp_path, max_rows=5) as store:
        # Written out of time order: eviction follows the prediction time, not the insertion order.
        for i in (3, 0, 7, 5, 1, 6, 2, 4):
            store.add([record(f"req-{i}", timestamp=T0 + i)])
        await store.flush()
        counts = store.counts()
        assert (counts.rows, counts.evicted) == (5, {"ttl": 0, "max_rows": 3})
        labels = [LabelItem(f"req-{i}", 0, "x") for i in range(8)]
        assert kinds(await store.attach_labels(labels)) == ["unmatched"] * 3 + ["joined"] * 5


async def test_a_repeated_request_id_keeps_the_first_prediction(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        store.add([record("req-1", timestamp=T0)])
        store.add([record("req-1", timestamp=T0 + 5)])
        await store.flush()
        assert (store.counts().rows, store.counts().conflicts) == (1, 1)
        [outcome] = await store.attach_labels([LabelItem("req-1", 0, "a")])
        assert outcome.joined is not None and outcome.joined.timestamp == T0


async def test_a_full_buffer_drops_whole_exchanges_and_counts_them(tmp_path: Path) -> None:
    async with opened(tmp_path, buffer_rows=10, batch_rows=100) as store:
        for i in range(4):
            store.add(request(f"req-{i}", 3))  # 3 + 3 + 3 fit; the fourth would make 12
        store.add([record("req-last")])  # one row still fits
        assert (store.counts().pending, store.counts().dropped["buffer_full"]) == (10, 3)
        await store.flush()
        assert store.counts().rows == 10
        store.add(request("req-after", 3))  # room again once written
        assert store.counts().dropped["buffer_full"] == 3


async def test_several_exchanges_in_one_call_are_dropped_exchange_by_exchange(tmp_path: Path) -> None:
    # The monitor hands over the records of many exchanges at once; only those that do not fit go.
    async with opened(tmp_path, buffer_rows=10, batch_rows=100) as store:
        store.add(request("req-0", 6))
        store.add([*request("req-1", 3), *request("req-2", 2), *request("req-3", 1)])
        assert (store.counts().pending, store.counts().dropped["buffer_full"]) == (10, 2)
        await store.flush()
        assert sorted(row[0] for row in query(store.path, "SELECT DISTINCT request_id FROM predictions")) == [
            "req-0",
            "req-1",
            "req-3",
        ]


async def test_a_buffer_full_in_bytes_drops_whole_exchanges_and_counts_them(tmp_path: Path) -> None:
    def long(request_id: str) -> list[PredictionRecord]:
        # Two rows of a generated-text model: 50 kB of prediction each, where rows alone would take them all.
        return [make_record(timestamp=T0, request_id=request_id, row=i, prediction="t" * 50_000) for i in range(2)]

    async with opened(tmp_path, buffer_rows=10_000, buffer_bytes=1 << 20, batch_rows=100_000) as store:
        for i in range(40):  # 4 MB offered to a 1 MiB buffer that nothing writes yet
            store.add(long(f"req-{i}"))
            assert store.pending_bytes <= 1 << 20
        counts = store.counts()
        assert (counts.pending, counts.dropped["buffer_full"]) == (20, 60)  # 10 exchanges fit, with their overhead
        await store.flush()
        assert (store.counts().rows, store.pending_bytes) == (20, 0)
        store.add(long("req-after"))  # room again once written
        assert store.counts().pending == 2


async def test_one_exchange_larger_than_the_byte_bound_still_passes_an_empty_buffer(tmp_path: Path) -> None:
    async with opened(tmp_path, buffer_bytes=10_000) as store:
        store.add([make_record(timestamp=T0, request_id="big", prediction="t" * 20_000)])
        store.add([record("next")])  # the buffer is over its bound until the big one is written
        assert (store.counts().pending, store.counts().dropped["buffer_full"]) == (1, 1)
        await store.flush()
        store.add([record("next")])
        assert store.counts().pending == 1


async def test_the_buffer_holds_the_encoded_row_not_the_feature_dict(tmp_path: Path) -> None:
    # Only the segment features are stored, so only they may count against the buffer.
    async with opened(tmp_path, segment_features=("country",)) as store:
        store.add([record("req-1", features={"country": "DE", "notes": "n" * 1_000_000})])
        assert 0 < store.pending_bytes < 2_000
        # A record that cannot be encoded (p = 0 has no weight) costs its own row only.
        store.add([record("req-2"), make_record(timestamp=T0, request_id="req-2", row=1, probability=0.0)])
        assert (store.counts().pending, store.counts().failed) == (2, 1)
        await store.flush()
        assert (store.counts().rows, store.counts().failed, store.pending_bytes) == (2, 1, 0)


async def test_missing_values_are_stored_as_null(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        store.add([make_record(timestamp=T0, request_id="bare", model_version=None, scores=None, features={"x": 1})])
        store.add([make_record(timestamp=T0, request_id="zero", model_version="0", scores=[0.0, 1.0], prediction=0)])
        await store.flush()
        rows = query(
            store.path,
            "SELECT request_id, version, typeof(version), scores, typeof(segments), prediction"
            " FROM predictions ORDER BY request_id",
        )
        assert rows == [("bare", None, "null", None, "null", "null"), ("zero", "0", "text", "[0.0,1.0]", "null", "0")]
        [bare] = await store.attach_labels([LabelItem("bare", None, 1)])
        assert bare.joined is not None
        assert (bare.joined.version, bare.joined.scores, bare.joined.segments) == (None, None, {})


async def test_a_batch_is_inserted_whole_in_statements_of_every_size(tmp_path: Path) -> None:
    async with opened(tmp_path, batch_rows=1000) as store:
        store.add([record(f"req-{i}") for i in range(127)])  # 64 + 32 + 16 + 8 + 4 + 2 + 1
        store.add([record("req-5")])  # a repeat: a conflict, not a second row
        await store.flush()
        assert (store.counts().rows, store.counts().conflicts) == (127, 1)
        assert query(store.path, "SELECT count(DISTINCT request_id), min(weight), max(weight) FROM predictions") == [
            (127, 4.0, 4.0)
        ]


async def test_a_failing_database_is_counted_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.store")
    async with opened(tmp_path) as store:
        with write_lock(store.path):
            store.add([record("req-1")])  # never raises, whatever the file's state
            await store.flush()
            store.add([record("req-2")])
            await store.flush()
            assert (store.counts().failed, store.counts().rows) == (2, 0)
            # Labels are the caller's data: the batch is refused as a whole, so that it can be retried.
            with pytest.raises(StoreError, match="could not store labels"):
                await store.attach_labels([LabelItem("req-1", 0, "a")])
            assert store.counts().label_failures == 1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "is failing" in warnings[0].getMessage()  # once per outage
        store.add([record("req-3")])
        await store.flush()
        assert (store.counts().failed, store.counts().rows) == (2, 1)
        assert caplog.records[-1].getMessage().endswith("recovered")


async def test_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        assert query(store.path, "PRAGMA journal_mode") == [("wal",)]


async def test_close_writes_the_buffer(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        store.add(request("req-1", 3))
        assert store.counts().pending == 3
    assert query(tmp_path / FILENAME, "SELECT count(*) FROM predictions") == [(3,)]
    assert store.counts().dropped == {"buffer_full": 0, "shutdown": 0}
    store.add([record("req-late")])  # after close: counted, never raised
    assert store.counts().dropped["shutdown"] == 1
    with pytest.raises(StoreError, match="is closed"):
        await store.labelled(since=0)
    await store.close(0.0)  # a second close does nothing


async def test_close_counts_what_the_deadline_cut_off(tmp_path: Path) -> None:
    store = PredictionStore(tmp_path, batch_rows=1, flush_seconds=SLOW)
    await store.start()
    loop = asyncio.get_running_loop()
    with write_lock(store.path):
        for i in range(20):
            store.add([record(f"req-{i}")])
        # Each one-row batch waits for the lock (100 ms) and fails: only one or two are tried in time.
        started = loop.time()
        await store.close(started + 0.15)
        assert loop.time() - started < 1.0
        counts = store.counts()
        assert counts.dropped["shutdown"] >= 15
        await wait_until(lambda: store.counts().failed + store.counts().dropped["shutdown"] == 20)


async def test_an_unusable_file_stops_start_up_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(b"this is not a database, just some bytes " * 100)
    store = PredictionStore(tmp_path)
    with pytest.raises(StoreError, match="SIDECAR_STATE_DIR") as caught:
        await store.start()
    assert isinstance(caught.value, SidecarError)
    assert str(tmp_path / FILENAME) in str(caught.value)
    await store.close(0.0)  # harmless after a failed start

    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(StoreError, match="SIDECAR_STATE_DIR"):
        await PredictionStore(not_a_directory).start()


async def test_another_schema_stops_start_up(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / FILENAME)
    connection.execute("CREATE TABLE predictions (id TEXT)")
    connection.close()
    with pytest.raises(StoreError, match="schema version 0"):
        await PredictionStore(tmp_path).start()


async def test_the_state_directory_is_created(tmp_path: Path) -> None:
    async with opened(tmp_path / "state" / "sidecar") as store:
        assert store.path == tmp_path / "state" / "sidecar" / FILENAME
        assert store.path.exists()


@pytest.mark.parametrize(
    "options",
    [
        {"ttl_seconds": 0},
        {"ttl_seconds": math.inf},
        {"max_rows": 0},
        {"buffer_rows": 0},
        {"buffer_bytes": 0},
        {"flush_seconds": 0},
    ],
)
def test_settings_are_checked(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        PredictionStore(tmp_path, **options)
