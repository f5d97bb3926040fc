"""What only the PostgreSQL backend does: replicas sharing one database, leadership, schema, credentials.

A real PostgreSQL server (tests/postgres.py); each test has a database of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest

from sidecar.experiments.outcomes import OutcomeItem
from sidecar.store import LabelItem, PredictionStore, StoreError
from sidecar.store import postgres as backend
from sidecar.store.leader import leader_key
from sidecar.store.schema import SCHEMA_VERSION
from tests.postgres import Postgres
from tests.records import make_record
from tests.store.support import SLOW, T0, Clock, Place, kinds, opened, record
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

INTERVAL = 0.5  # leader_interval: a change of leader must happen within two
ARMS = ("control", "treatment")

# The schema of version 1, as the sidecar created it before experiments: no unit or segment, no outcomes.
_VERSION_1 = [
    "CREATE TABLE sidecar_schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    """
    CREATE TABLE predictions (
        request_id text NOT NULL, row_index integer NOT NULL, ts double precision NOT NULL, model text NOT NULL,
        version text, variant text NOT NULL, prediction text NOT NULL, scores text, weight double precision NOT NULL,
        segments text, label text, label_ts double precision, labelled_at double precision,
        confidence double precision, label_seq bigint, CONSTRAINT predictions_key UNIQUE (request_id, row_index)
    )
    """,
    "CREATE SEQUENCE predictions_label_seq AS bigint OWNED BY predictions.label_seq",
    "CREATE INDEX predictions_model_ts ON predictions (model, ts)",
    "CREATE INDEX predictions_labelled ON predictions (model, ts) INCLUDE (label_seq) WHERE labelled_at IS NOT NULL",
    "INSERT INTO sidecar_schema_version (version) VALUES (1)",
    f"""
    INSERT INTO predictions (request_id, row_index, ts, model, version, variant, prediction, weight)
    VALUES ('old-1', 0, {T0}, 'iris', '3', 'control', '"setosa"', 4.0)
    """,
]


@asynccontextmanager
async def replicas(place: Place, count: int, **options: Any) -> AsyncIterator[list[PredictionStore]]:
    """``count`` stores on one database, as replicas of one model; started one after the other."""
    options = {"model": "iris", "leader_interval": INTERVAL, "flush_seconds": SLOW, **options}
    stores = [PredictionStore(place.state_dir / str(i), url=place.url, **options) for i in range(count)]
    try:
        for store in stores:
            await store.start()
        yield stores
    finally:
        for store in stores:
            await store.close(asyncio.get_running_loop().time() + 5.0)


def lock_holder(place: Place) -> list[int]:
    """The pids of the sessions holding the leader lock of model "iris" (pg_locks splits the key in two)."""
    key = leader_key("iris")
    return [
        pid
        for (pid,) in place.rows(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            f" AND classid = {(key >> 32) & 0xFFFFFFFF} AND objid = {key & 0xFFFFFFFF}"
        )
    ]


async def test_replicas_share_predictions_and_each_label_joins_once(database: Place) -> None:
    async with replicas(database, 2) as (a, b):
        for i in range(300):
            (a if i % 2 else b).add([record(f"req-{i}", timestamp=T0 + i)])
        await asyncio.gather(a.flush(), b.flush())
        labels = [LabelItem(f"req-{i}", None, f"label-{i}") for i in range(300)]
        # The same labels posted to both at once, in opposite orders: row locks taken in key order never deadlock.
        from_a, from_b = await asyncio.gather(a.attach_labels(labels), b.attach_labels(labels[::-1]))
        pairs = list(zip(kinds(from_a), kinds(from_b)[::-1], strict=True))
        assert set(pairs) <= {("duplicate", "joined"), ("joined", "duplicate")}
        assert a.counts().labels["joined"] + b.counts().labels["joined"] == 300
        assert a.counts().labels["duplicate"] + b.counts().labels["duplicate"] == 300
        # Either replica reads the whole fleet's rows, in the same order.
        everything = await a.labelled(since=0, model="iris")
        assert [j.request_id for j in everything] == [f"req-{i}" for i in range(300)]
        assert [j.label for j in everything] == [f"label-{i}" for i in range(300)]
        assert await b.labelled(since=0, model="iris") == everything
        assert await a.coverage(since=0) == await b.coverage(since=0) == (300, 300)
        assert await a.label_marker(since=0, model="iris") == await b.label_marker(since=0, model="iris")
        assert [a.is_leader, b.is_leader] == [True, False]  # the first to start took the lock


async def test_a_prediction_written_by_two_replicas_is_stored_once(database: Place) -> None:
    async with replicas(database, 2) as (a, b):
        a.add([record("req-1", timestamp=T0)])
        b.add([record("req-1", timestamp=T0 + 5)])
        await a.flush()
        await b.flush()
        assert (a.counts().conflicts, b.counts().conflicts) == (0, 1)
        [outcome] = await b.attach_labels([LabelItem("req-1", 0, "a")])
        assert outcome.joined is not None and outcome.joined.timestamp == T0


async def test_when_the_leader_closes_another_replica_leads_within_two_intervals(database: Place) -> None:
    async with replicas(database, 3) as (a, b, c):
        assert [a.is_leader, b.is_leader, c.is_leader] == [True, False, False]
        assert len(lock_holder(database)) == 1
        await a.close(asyncio.get_running_loop().time() + 5.0)
        assert not a.is_leader
        await wait_until(lambda: b.is_leader or c.is_leader, timeout=2 * INTERVAL)
        await asyncio.sleep(INTERVAL * 1.5)  # another round each: still exactly one
        assert [b.is_leader, c.is_leader].count(True) == 1


async def test_when_the_leaders_session_ends_another_replica_leads_within_two_intervals(database: Place) -> None:
    async with replicas(database, 2) as (a, b):
        [pid] = lock_holder(database)
        assert database.rows(f"SELECT pg_terminate_backend({pid})") == [(True,)]
        await wait_until(lambda: b.is_leader, timeout=2 * INTERVAL)
        # The old leader's next check fails on its dead connection: it stops leading, and does not take over again.
        await wait_until(lambda: not a.is_leader, timeout=2 * INTERVAL)
        await asyncio.sleep(INTERVAL * 1.5)
        assert [a.is_leader, b.is_leader] == [False, True]
        assert len(lock_holder(database)) == 1


async def test_only_the_leader_evicts_and_writes_never_do(database: Place) -> None:
    clock = Clock(T0)
    async with replicas(database, 2, ttl_seconds=100, clock=clock) as (a, b):
        for i in range(5):
            b.add([record(f"req-{i}", timestamp=T0 + i)])
        clock.now = T0 + 1000  # all past the TTL
        await b.flush()
        assert b.counts().evicted == {"ttl": 0, "max_rows": 0}
        assert await b.evict() == (0, 0)  # not the leader
        assert await b.coverage(since=0) == (5, 0)
        assert await a.evict() == (5, 0)
        assert (a.counts().evicted["ttl"], a.counts().rows, b.counts().evicted["ttl"]) == (5, 0, 0)


async def test_eviction_deletes_in_batches(database: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "EVICT_BATCH_ROWS", 3)
    clock = Clock(T0 + 1000)
    async with opened(database, ttl_seconds=500, max_rows=4, clock=clock, model="iris") as store:
        for i in range(20):
            store.add([record(f"req-{i}", timestamp=T0 + (0 if i < 9 else 600 + i))])
        store.add([record("other-model", timestamp=T0, model="wine")])  # another model's: not this store's to evict
        await store.flush()
        assert await store.evict() == (9, 7)  # 9 past the TTL in 3 full batches; then 11 - 4 in 3 + 3 + 1
        assert store.counts().rows == 4
        assert database.rows("SELECT model, count(*) FROM predictions GROUP BY model ORDER BY model") == [
            ("iris", 4),
            ("wine", 1),
        ]
        kept = await store.coverage(since=0, model="iris")
        assert kept == (4, 0)


async def test_replicas_starting_together_create_the_schema_once(database: Place) -> None:
    stores = [PredictionStore(database.state_dir / str(i), url=database.url, flush_seconds=SLOW) for i in range(4)]
    try:
        await asyncio.gather(*(store.start() for store in stores))
        # Each migration step applied once, whichever replica applied it.
        versions = database.rows("SELECT version FROM sidecar_schema_version ORDER BY version")
        assert versions == [(version,) for version in range(1, SCHEMA_VERSION + 1)]
        assert [store.is_leader for store in stores].count(True) == 1
    finally:
        for store in stores:
            await store.close(asyncio.get_running_loop().time() + 5.0)


async def test_a_newer_schema_stops_start_up_with_a_clear_error(database: Place) -> None:
    async with opened(database):
        pass
    database.execute(f"INSERT INTO sidecar_schema_version (version) VALUES ({SCHEMA_VERSION + 1})")
    store = PredictionStore(database.state_dir, url=database.url)
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}") as caught:
        await store.start()
    assert_masked(str(caught.value), database)
    await store.close(0.0)


async def test_a_predictions_table_of_someone_else_stops_start_up(database: Place) -> None:
    database.execute("CREATE TABLE predictions (id integer)")
    with pytest.raises(StoreError, match="no ml-sidecar created") as caught:
        await PredictionStore(database.state_dir, url=database.url).start()
    assert_masked(str(caught.value), database)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda url, password: url.replace(password, "not-the-password"), "password authentication failed"),
        (lambda url, password: url.rsplit("/", 1)[0] + "/no_such_database", 'database "no_such_database" does not'),
        (lambda url, password: url + "?sslmode=sometimes", "invalid sslmode value"),
        (lambda url, password: url + "?no_such_option=1", "not a PostgreSQL connection URL"),
    ],
)
async def test_a_url_that_cannot_work_stops_start_up_without_its_password(
    database: Place, postgres: Postgres, change: Any, reason: str
) -> None:
    assert database.url is not None
    url = change(database.url, postgres.password)
    store = PredictionStore(database.state_dir, url=url)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StoreError, match=reason) as caught:
        await store.start()
    assert loop.time() - started < 5.0
    message = str(caught.value)
    assert "SIDECAR_STATE_URL" in message and "***" in message
    assert postgres.password not in message and "not-the-password" not in message


def assert_masked(message: str, place: Place) -> None:
    assert place.url is not None
    password = place.url.split(":")[2].split("@")[0]
    assert "SIDECAR_STATE_URL" in message and password not in message and "***" in message


async def test_a_version_1_database_is_migrated_and_takes_units_and_outcomes(database: Place) -> None:
    for statement in _VERSION_1:
        database.execute(statement)
    async with opened(database) as store:
        store.add([make_record(timestamp=T0 + 1, request_id="new-1", variant="treatment", unit="u-1", segment="de")])
        items = [OutcomeItem("revenue", 5.0, "old-1", None, None), OutcomeItem("conversion", 1.0, None, None, "u-1")]
        outcomes = await store.attach_outcomes("exp", items, arms=ARMS)
        assert [(o.kind, o.variant) for o in outcomes] == [("joined", "control"), ("joined", "treatment")]
        assert kinds(await store.attach_labels([LabelItem("old-1", 0, "a")])) == ["joined"]
        assert await store.experiment_started("exp", T0 + 2) == T0 + 2
    assert database.rows("SELECT version FROM sidecar_schema_version ORDER BY version") == [(1,), (2,), (3,), (4,)]
    assert database.rows("SELECT request_id, unit, segment FROM predictions ORDER BY ts") == [
        ("old-1", None, None),
        ("new-1", "u-1", "de"),
    ]


async def test_outcomes_posted_to_two_replicas_at_once_are_stored_once(database: Place) -> None:
    async with replicas(database, 2) as (a, b):
        for i in range(200):
            record = make_record(timestamp=T0 + i, request_id=f"req-{i}", variant=ARMS[i % 2], unit=f"u-{i % 50}")
            (a if i % 2 else b).add([record])
        await asyncio.gather(a.flush(), b.flush())
        items = [OutcomeItem("revenue", float(i), f"req-{i}", None, None) for i in range(200)]
        items += [OutcomeItem("conversion", 1.0, None, None, f"u-{u}") for u in range(50)]
        # The same outcomes posted to both at once, in opposite orders: inserted in key order, they never deadlock.
        from_a, from_b = await asyncio.gather(
            a.attach_outcomes("exp", items, arms=ARMS), b.attach_outcomes("exp", items[::-1], arms=ARMS)
        )
        pairs = list(zip(kinds(from_a), kinds(from_b)[::-1], strict=True))
        assert set(pairs) <= {("duplicate", "joined"), ("joined", "duplicate")}
        assert a.counts().outcomes["joined"] + b.counts().outcomes["joined"] == 250
        assert database.rows("SELECT metric, count(*), sum(value) FROM outcomes GROUP BY metric ORDER BY metric") == [
            ("conversion", 50, 50.0),
            ("revenue", 200, float(sum(range(200)))),
        ]
        # Either replica sums the whole fleet's outcomes, the same way.
        sums = [
            await store.outcome_sums("exp", "revenue", ARMS, since=0, period_seconds=600.0, calendar=False)
            for store in (a, b)
        ]
        assert sums[0].total.tolist() == sums[1].total.tolist()
        assert sums[0].total[:, 1].sum() == float(sum(range(200)))


async def test_a_full_label_batch_joins_quickly_before_the_table_has_statistics(database: Place) -> None:
    # Written just now, the table has no statistics yet: the planner takes it for a few hundred rows. The labels'
    # UPDATE must still find its rows by their ctids, not compare each with every row (10,000 x 100,000).
    async with opened(database, buffer_rows=100_000, batch_rows=100_000, buffer_bytes=1 << 30) as store:
        store.add([make_record(timestamp=T0, request_id=f"req-{i}") for i in range(100_000)])
        await store.flush()
        loop = asyncio.get_running_loop()
        started = loop.time()
        labels = [LabelItem(f"req-{i}", None, "a") for i in range(0, 100_000, 10)]
        assert kinds(await store.attach_labels(labels)) == ["joined"] * 10_000
        assert loop.time() - started < backend.STATEMENT_TIMEOUT_SECONDS


async def test_the_sums_join_whole_windows_before_the_table_has_statistics(database: Place) -> None:
    # As above, the planner takes the fresh table for a small one; the sums must still join by hashing or sorting,
    # not look every outcome up once per prediction (100,000 x 5,000).
    async with opened(database, buffer_rows=100_000, batch_rows=100_000, buffer_bytes=1 << 30) as store:
        records = [
            make_record(timestamp=T0 + i, request_id=f"req-{i}", variant=ARMS[i % 2], unit=f"u-{i % 20_000}")
            for i in range(100_000)
        ]
        store.add(records)
        outcomes = [OutcomeItem("revenue", 1.0, f"req-{i}", None, None) for i in range(0, 100_000, 20)]
        assert kinds(await store.attach_outcomes("exp", outcomes, arms=ARMS)) == ["joined"] * 5_000
        loop = asyncio.get_running_loop()
        started = loop.time()
        sums = await store.outcome_sums("exp", "revenue", ARMS, since=0, period_seconds=3600.0, calendar=False)
        assert loop.time() - started < backend.STATEMENT_TIMEOUT_SECONDS
        assert sums.total[:, 0].tolist() == [10_000, 10_000] and sums.total[:, 1].sum() == 5_000


async def test_outcomes_are_dated_by_the_database_clock(database: Place) -> None:
    async with opened(database, clock=Clock(T0)) as store:
        store.add([make_record(timestamp=T0, request_id="req-1", variant="control")])
        await store.attach_outcomes("exp", [OutcomeItem("revenue", 1.0, "req-1", None, None)], arms=ARMS)
        [(received_at, now)] = database.rows(
            "SELECT received_at, extract(epoch FROM now())::double precision FROM outcomes"
        )
        assert 0 <= now - received_at < 60


async def test_what_postgresql_cannot_hold_costs_its_own_row(database: Place) -> None:
    async with opened(database) as store:
        store.add([record("good")])
        store.add([record("nul\x00id")])
        store.add([make_record(timestamp=T0, request_id="nul-version", model_version="3\x00")])
        store.add([make_record(timestamp=T0, request_id="far", row=2**31)])
        store.add([make_record(timestamp=T0, request_id="nul-unit", unit="u\x00")])
        store.add([make_record(timestamp=T0, request_id="nul-segment", segment="d\x00e")])
        await store.flush()
        assert (store.counts().rows, store.counts().failed) == (1, 5)
        # An outcome no prediction can match is unmatched, and spares the rest of its batch.
        items = [OutcomeItem("r", 1.0, None, None, "u\x00"), OutcomeItem("r", 1.0, "good", 2**31, None)]
        assert kinds(
            await store.attach_outcomes("exp", [*items, ("r", 1.0, "good", None, None, None)], arms=["primary"])
        ) == [
            "unmatched",
            "unmatched",
            "joined",
        ]


async def test_labels_are_dated_by_the_database_clock(database: Place) -> None:
    async with opened(database, clock=Clock(T0)) as store:
        store.add([record("req-1")])
        [outcome] = await store.attach_labels([LabelItem("req-1", 0, "a")])
        assert outcome.joined is not None
        [(now,)] = database.rows("SELECT extract(epoch FROM now())::double precision")
        assert 0 <= now - outcome.joined.labelled_at < 60


async def test_a_url_without_a_password_still_masks_nothing_and_connects(database: Place, postgres: Postgres) -> None:
    # libpq also takes the password from ?password=: the store shows neither.
    assert database.url is not None
    url = database.url.replace(f":{postgres.password}@", "@") + f"?password={postgres.password}"
    async with opened(Place(database.state_dir, url)) as store:
        assert store.available and postgres.password not in store.location
        store.add([record("req-1")])
        await store.flush()
        assert store.counts().rows == 1


def test_the_connection_sets_its_timeouts(database: Place) -> None:
    assert database.url is not None
    db = backend.Database.connect(database.url, ttl_seconds=60.0, max_rows=10, model=None, role="writer")
    try:
        with psycopg.connect(database.url, autocommit=True) as other:
            settings = other.execute(
                "SELECT application_name, backend_type FROM pg_stat_activity WHERE application_name LIKE 'ml-sidecar%'"
                " AND datname = current_database()"
            ).fetchall()
        assert settings == [("ml-sidecar writer", "client backend")]
        assert db.rows == 0 and not db.broken
    finally:
        db.close()
