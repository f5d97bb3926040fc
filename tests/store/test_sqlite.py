"""What only the SQLite backend does: its file, its locks, its schema versions."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sidecar.exceptions import SidecarError
from sidecar.experiments.outcomes import OutcomeItem
from sidecar.store import FILENAME, LabelItem, PredictionStore, StoreError
from sidecar.store.sqlite import SCHEMA_VERSION
from tests.records import make_record
from tests.store.support import SLOW, T0, Place, kinds, opened, record
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parent.parent.parent

# The schema of version 1, as the sidecar created it before labels were numbered and confidences kept.
_VERSION_1 = """
CREATE TABLE predictions (
    request_id TEXT NOT NULL, row_index INTEGER NOT NULL, ts REAL NOT NULL, model TEXT NOT NULL, version TEXT,
    variant TEXT NOT NULL, prediction TEXT NOT NULL, scores TEXT, weight REAL NOT NULL, segments TEXT,
    label TEXT, label_ts REAL, labelled_at REAL, UNIQUE (request_id, row_index)
);
CREATE INDEX predictions_ts ON predictions (ts);
INSERT INTO predictions VALUES ('old-1', 0, 1764144638.0, 'iris', '3', 'primary', '"setosa"', NULL, 4.0, NULL,
                                '"setosa"', NULL, 1764148238.0);
INSERT INTO predictions VALUES ('old-2', 0, 1764144639.0, 'iris', '3', 'primary', '"setosa"', NULL, 4.0, NULL,
                                NULL, NULL, NULL);
PRAGMA user_version = 1;
"""
# Version 2, as the sidecar created it before experiments: no unit or segment, no outcomes table.
_VERSION_2 = """
CREATE TABLE predictions (
    request_id TEXT NOT NULL, row_index INTEGER NOT NULL, ts REAL NOT NULL, model TEXT NOT NULL, version TEXT,
    variant TEXT NOT NULL, prediction TEXT NOT NULL, scores TEXT, weight REAL NOT NULL, segments TEXT,
    label TEXT, label_ts REAL, labelled_at REAL, confidence REAL, label_seq INTEGER, UNIQUE (request_id, row_index)
);
CREATE INDEX predictions_ts ON predictions (ts);
INSERT INTO predictions VALUES ('old-1', 0, 1764144638.0, 'iris', '3', 'control', '"setosa"', NULL, 4.0, NULL,
                                '"setosa"', NULL, 1764148238.0, 0.9, 1);
PRAGMA user_version = 2;
"""


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


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    return Place(path.parent).rows(sql)


async def test_a_failing_database_is_counted_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.store")
    async with opened(tmp_path) as store:
        with write_lock(tmp_path / FILENAME):
            store.add([record("req-1")])  # never raises, whatever the file's state
            await store.flush()
            store.add([record("req-2")])
            await store.flush()
            assert (store.counts().failed, store.counts().rows) == (2, 0)
            assert not store.available
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
        assert store.available


async def test_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    async with opened(tmp_path):
        assert query(tmp_path / FILENAME, "PRAGMA journal_mode") == [("wal",)]


async def test_close_counts_what_the_deadline_cut_off(tmp_path: Path) -> None:
    store = PredictionStore(tmp_path, batch_rows=1, flush_seconds=SLOW)
    await store.start()
    loop = asyncio.get_running_loop()
    with write_lock(tmp_path / FILENAME):
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


async def test_a_newer_schema_stops_start_up(tmp_path: Path) -> None:
    async with opened(tmp_path):
        pass
    connection = sqlite3.connect(tmp_path / FILENAME)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(
        StoreError, match=f"schema version {SCHEMA_VERSION + 1}, and this sidecar reads version {SCHEMA_VERSION}"
    ):
        await PredictionStore(tmp_path).start()


async def test_a_version_1_file_is_migrated_and_keeps_its_labels(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / FILENAME)
    connection.executescript(_VERSION_1)
    connection.close()
    async with opened(tmp_path) as store:
        assert store.counts().rows == 2
        [old] = await store.labelled(since=0)
        assert (old.request_id, old.label, old.labelled_at) == ("old-1", "setosa", T0 + 3600)
        before = await store.label_marker(since=0, model="iris")
        assert before[0] == 1
        assert kinds(await store.attach_labels([LabelItem("old-2", 0, "b"), LabelItem("old-1", 0, "c")])) == [
            "joined",
            "duplicate",
        ]
        after = await store.label_marker(since=0, model="iris")
        assert after[0] == 2 and after[1] > before[1]  # numbered after the labels the file had
        assert await store.estimated(since=0) == {}  # version 1 kept no confidence
    assert query(tmp_path / FILENAME, "PRAGMA user_version") == [(5,)]  # through versions 2, 3 and 4, to 5
    indexes = {row[0] for row in query(tmp_path / FILENAME, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"predictions_labelled", "predictions_unit", "outcomes_exposed", "shadow_predictions_ts"} <= indexes


async def test_a_new_file_and_a_migrated_one_have_the_same_schema(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    (tmp_path / "old").mkdir()
    connection = sqlite3.connect(tmp_path / "old" / FILENAME)
    connection.executescript(_VERSION_1)
    connection.close()
    for directory in ("new", "old"):
        async with opened(tmp_path / directory):
            pass
    schema = "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
    assert query(tmp_path / "new" / FILENAME, schema) == query(tmp_path / "old" / FILENAME, schema)
    for table in ("predictions", "outcomes", "experiments", "shadow_predictions"):
        columns = f"SELECT name, type, pk FROM pragma_table_info('{table}')"
        assert query(tmp_path / "new" / FILENAME, columns) == query(tmp_path / "old" / FILENAME, columns)


async def test_a_version_2_file_is_migrated_and_takes_units_and_outcomes(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / FILENAME)
    connection.executescript(_VERSION_2)
    connection.close()
    async with opened(tmp_path) as store:
        assert store.counts().rows == 1
        store.add([make_record(timestamp=T0 + 1, request_id="new-1", variant="treatment", unit="u-1", segment="de")])
        items = [OutcomeItem("revenue", 5.0, "old-1", None, None), OutcomeItem("conversion", 1.0, None, None, "u-1")]
        outcomes = await store.attach_outcomes("exp", items, arms=("control", "treatment"))
        assert [(o.kind, o.variant) for o in outcomes] == [("joined", "control"), ("joined", "treatment")]
        assert kinds(await store.attach_labels([LabelItem("old-1", 0, "again")])) == ["duplicate"]  # its label kept
    assert query(tmp_path / FILENAME, "PRAGMA user_version") == [(5,)]
    assert query(tmp_path / FILENAME, "SELECT request_id, unit, segment FROM predictions ORDER BY ts") == [
        ("old-1", None, None),
        ("new-1", "u-1", "de"),
    ]


async def test_a_version_3_file_is_migrated_and_keeps_its_outcomes(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        store.add([make_record(timestamp=T0, request_id="req-1", variant="control", unit="u-1")])
        outcome = OutcomeItem("conversion", 1.0, None, None, "u-1")
        assert kinds(await store.attach_outcomes("exp", [outcome], arms=("control",))) == ["joined"]
    # Back to version 3, as the sidecar wrote it before experiments had a start.
    Place(tmp_path).execute("DROP TABLE shadow_predictions; DROP TABLE experiments; PRAGMA user_version = 3;")
    async with opened(tmp_path) as store:
        assert kinds(await store.attach_outcomes("exp", [outcome], arms=("control",))) == ["duplicate"]
        assert await store.experiment_started("exp", T0 + 60) == T0 + 60
    assert query(tmp_path / FILENAME, "PRAGMA user_version") == [(5,)]
    assert query(tmp_path / FILENAME, "SELECT name, started_at FROM experiments") == [("exp", T0 + 60)]


async def test_a_version_4_file_is_migrated_and_takes_a_challengers_predictions(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        store.add([make_record(timestamp=T0, request_id="req-1", variant="control", prediction="a")])
    # Back to version 4, as the sidecar wrote it before shadow experiments kept the challenger's predictions.
    Place(tmp_path).execute("DROP TABLE shadow_predictions; PRAGMA user_version = 4;")
    async with opened(tmp_path) as store:
        answer = make_record(timestamp=T0, request_id="req-1", variant="challenger", prediction="b")
        store.add_shadow("shadow-v2", [answer])
        pairs = await store.shadow_pairs("shadow-v2", control="control", since=T0)
    assert (pairs.control, pairs.challenger) == (["a"], ["b"])
    assert query(tmp_path / FILENAME, "PRAGMA user_version") == [(5,)]


async def test_a_refused_shadow_batch_is_counted_failed(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        store.add_shadow("shadow-v2", [make_record(timestamp=T0, request_id="req-1", variant="challenger")])
        with write_lock(tmp_path / FILENAME):
            await store.flush()
        assert store.counts().shadow_unstored == {"buffer_full": 0, "shutdown": 0, "failed": 1}
        assert store.counts().failed == 0  # the predictions' own count is not the challenger's
    assert query(tmp_path / FILENAME, "SELECT count(*) FROM shadow_predictions") == [(0,)]


async def test_a_refused_outcome_batch_stores_nothing_and_is_counted(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        store.add([make_record(timestamp=T0, request_id="req-1", variant="control", unit="u-1")])
        await store.flush()
        items = [OutcomeItem("revenue", 5.0, "req-1", None, None), OutcomeItem("conversion", 1.0, None, None, "u-1")]
        with write_lock(tmp_path / FILENAME):
            with pytest.raises(StoreError, match="could not store outcomes"):
                await store.attach_outcomes("exp", items, arms=("control",))
        assert (store.counts().outcome_failures, store.counts().outcomes["joined"]) == (2, 0)
        assert query(tmp_path / FILENAME, "SELECT count(*) FROM outcomes") == [(0,)]
        # Retried once the file is free: stored, once.
        assert kinds(await store.attach_outcomes("exp", items, arms=("control",))) == ["joined", "joined"]


async def test_the_state_directory_is_created(tmp_path: Path) -> None:
    async with opened(tmp_path / "state" / "sidecar") as store:
        assert store.path == tmp_path / "state" / "sidecar" / FILENAME
        assert store.path.exists()


def test_choosing_sqlite_never_imports_the_postgresql_driver() -> None:
    code = (
        "import sys, asyncio, tempfile\n"
        "from sidecar.store import PredictionStore\n"
        "async def main():\n"
        "    with tempfile.TemporaryDirectory() as d:\n"
        "        store = PredictionStore(d)\n"
        "        await store.start()\n"
        "        await store.close(asyncio.get_running_loop().time() + 5)\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith(('psycopg', 'sidecar.store.postgres'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
