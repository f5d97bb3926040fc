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
        assert database.rows("SELECT version FROM sidecar_schema_version") == [(SCHEMA_VERSION,)]
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


async def test_what_postgresql_cannot_hold_costs_its_own_row(database: Place) -> None:
    async with opened(database) as store:
        store.add([record("good")])
        store.add([record("nul\x00id")])
        store.add([make_record(timestamp=T0, request_id="nul-version", model_version="3\x00")])
        store.add([make_record(timestamp=T0, request_id="far", row=2**31)])
        await store.flush()
        assert (store.counts().rows, store.counts().failed) == (1, 3)


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
