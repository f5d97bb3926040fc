"""PostgreSQL going away, coming back, and going slow, under a store that must never stop the sidecar.

These tests stop and start the session's one PostgreSQL server (about 0.1 s
each way here); each starts it again in a ``finally``, so a failing test
leaves it running for the next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from sidecar.experiments.outcomes import OutcomeItem
from sidecar.store import LabelItem, PredictionStore, StoreError, front
from sidecar.store import postgres as backend
from tests.postgres import Postgres
from tests.store.support import Clock, Place, kinds, opened, record
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

# Recovery waits for the next reconnection attempt: with the backoff at 0.5 s doubling, a few seconds.
RECOVERY_SECONDS = 10.0


@contextmanager
def stopped(postgres: Postgres) -> Iterator[None]:
    postgres.stop()
    try:
        yield
    finally:
        postgres.start()


def messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()]


async def test_predictions_wait_out_an_outage_and_labels_are_refused_meanwhile(
    postgres: Postgres, database: Place, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.store")
    options = {"buffer_rows": 30, "batch_rows": 10, "flush_seconds": 0.05, "leader_interval": 0.3}
    async with opened(database, model="iris", **options) as store:
        for i in range(5):
            store.add([record(f"before-{i}")])
        await wait_until(lambda: store.counts().rows == 5)
        assert store.is_leader
        with stopped(postgres):
            for i in range(20):
                store.add([record(f"during-{i}")])  # never raises, whatever the database's state
            await wait_until(lambda: not store.available)
            await wait_until(lambda: not store.is_leader)  # its connection gone, the leader lets go
            # Kept, not failed: the rows wait in the buffer.
            assert (store.counts().pending, store.counts().failed) == (20, 0)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(StoreError, match="could not store labels"):
                await store.attach_labels([LabelItem("before-0", 0, "a")])
            assert loop.time() - started < 2.0
            assert store.counts().label_failures == 1
            # Once the buffer is full, new exchanges are dropped and counted.
            for i in range(15):
                store.add([record(f"overflow-{i}")])
            assert (store.counts().pending, store.counts().dropped["buffer_full"]) == (30, 5)
        await wait_until(lambda: store.available and store.counts().pending == 0, timeout=RECOVERY_SECONDS)
        assert (store.counts().rows, store.counts().failed) == (35, 0)
        assert kinds(await store.attach_labels([LabelItem("before-0", 0, "a"), LabelItem("during-7", 0, "b")])) == [
            "joined",
            "joined",
        ]
        await wait_until(lambda: store.is_leader, timeout=RECOVERY_SECONDS)
    assert database.rows("SELECT count(*), count(label) FROM predictions") == [(35, 2)]
    # One line when the outage began, one when it ended: not one per batch or per retry.
    assert len(messages(caplog, logging.WARNING, "is unreachable")) == 1
    assert len(messages(caplog, logging.INFO, "has recovered")) == 1
    assert postgres.password not in caplog.text


async def test_outcomes_are_refused_during_an_outage_with_nothing_stored(postgres: Postgres, database: Place) -> None:
    items = [OutcomeItem("revenue", 5.0, "req-1", None, None), OutcomeItem("conversion", 1.0, None, None, "u-1")]
    async with opened(database, model="iris", flush_seconds=0.05, leader_interval=0.3) as store:
        store.add([record("req-1", variant="control")])
        await store.flush()
        with stopped(postgres):
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(StoreError, match="could not store outcomes"):
                await store.attach_outcomes("exp", items, arms=("control",))
            assert loop.time() - started < 2.0
            assert store.counts().outcome_failures == 2
        await wait_until(lambda: store.available, timeout=RECOVERY_SECONDS)
        # Nothing of the refused batch was kept: posted again, the outcome by request joins, and the unit is unknown.
        assert kinds(await store.attach_outcomes("exp", items, arms=("control",))) == ["joined", "unmatched"]
    assert database.rows("SELECT count(*) FROM outcomes") == [(1,)]


async def test_a_database_down_at_start_does_not_stop_start_up(
    postgres: Postgres, database: Place, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.store")
    # Clock(): the records are dated T0, which the TTL must keep by the store's clock.
    store = PredictionStore(
        database.state_dir, url=database.url, flush_seconds=0.05, leader_interval=0.3, clock=Clock()
    )
    try:
        with stopped(postgres):
            await store.start()  # the model must serve: no error
            assert not store.available and not store.is_leader
            store.add([record("req-1")])
            await asyncio.sleep(0.2)
            assert (store.counts().pending, store.counts().failed) == (1, 0)
        # When it comes back, the store creates the schema, writes what waited, and leads.
        await wait_until(lambda: store.counts().rows == 1, timeout=RECOVERY_SECONDS)
        await wait_until(lambda: store.is_leader, timeout=RECOVERY_SECONDS)
        assert kinds(await store.attach_labels([LabelItem("req-1", 0, "a")])) == ["joined"]
    finally:
        await store.close(asyncio.get_running_loop().time() + 5.0)
    [warning] = messages(caplog, logging.WARNING, "is unreachable")
    assert "SIDECAR_STATE_URL" in warning and postgres.password not in warning


async def test_close_during_an_outage_counts_what_it_could_not_write(postgres: Postgres, database: Place) -> None:
    store = PredictionStore(database.state_dir, url=database.url, flush_seconds=0.05)
    await store.start()
    loop = asyncio.get_running_loop()
    with stopped(postgres):
        for i in range(7):
            store.add([record(f"req-{i}")])
        await wait_until(lambda: not store.available)
        started = loop.time()
        await store.close(started + 2.0)
        assert loop.time() - started < 2.5
    assert store.counts().dropped["shutdown"] == 7
    assert store.counts().pending == 0


async def test_a_slow_database_cannot_hold_the_writer(database: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    # The statement timeout is 5 s; 0.5 s here keeps the test short. A lock stands in for a slow server.
    monkeypatch.setattr(backend, "STATEMENT_TIMEOUT_SECONDS", 0.5)
    async with opened(database) as store:
        assert database.url is not None
        with psycopg.connect(database.url) as other:
            other.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
            store.add([record("req-1")])
            loop = asyncio.get_running_loop()
            started = loop.time()
            await store.flush()
            assert loop.time() - started < 2.0
            assert (store.counts().pending, store.counts().failed, store.available) == (1, 0, False)
            with pytest.raises(StoreError, match="could not store labels"):
                await store.attach_labels([LabelItem("req-1", 0, "a")])
            assert loop.time() - started < 4.0
            other.rollback()  # the lock goes
        # The next attempt, after the backoff, writes it; the label then joins.
        await asyncio.sleep(1.0)
        assert kinds(await store.attach_labels([LabelItem("req-1", 0, "a")])) == ["joined"]
        assert store.available and store.counts().rows == 1


async def test_an_idle_store_notices_an_outage_and_its_end(
    postgres: Postgres, database: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No traffic, no label: only the idle check (every 5 s; 0.2 s here) keeps `available` true to the database.
    monkeypatch.setattr(front, "_PROBE_SECONDS", 0.2)
    async with opened(database, flush_seconds=0.05) as store:
        assert store.available
        with stopped(postgres):
            await wait_until(lambda: not store.available)
        await wait_until(lambda: store.available, timeout=RECOVERY_SECONDS)
