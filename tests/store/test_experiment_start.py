"""When an experiment started, on both backends: recorded once, the same after restarts and on every replica."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.store import PredictionStore, StoreError
from tests.store.support import SLOW, T0, Place, opened

pytestmark = pytest.mark.anyio


async def test_the_first_start_recorded_is_the_start_ever_after(place: Place) -> None:
    async with opened(place) as store:
        assert await store.experiment_started("ranker-v2", T0) == T0
        assert await store.experiment_started("ranker-v2", T0 + 600) == T0
        assert await store.experiment_started("ranker-v3", T0 + 5) == T0 + 5  # another experiment, its own start
    async with opened(place) as store:  # a restart
        assert await store.experiment_started("ranker-v2", T0 + 86400) == T0
    assert sorted(place.rows("SELECT name, started_at FROM experiments")) == [("ranker-v2", T0), ("ranker-v3", T0 + 5)]


async def test_replicas_asking_at_once_all_read_the_one_start_that_won(database: Place) -> None:
    # Four replicas sharing one PostgreSQL database, each offering its own start at the same moment.
    stores = [
        PredictionStore(database.state_dir / str(i), url=database.url, model="iris", flush_seconds=SLOW)
        for i in range(4)
    ]
    try:
        for store in stores:
            await store.start()
        starts = await asyncio.gather(*(s.experiment_started("ranker-v2", T0 + i) for i, s in enumerate(stores)))
        assert len(set(starts)) == 1 and starts[0] in {T0 + i for i in range(4)}
        assert database.rows("SELECT started_at FROM experiments") == [(starts[0],)]
    finally:
        for store in stores:
            await store.close(asyncio.get_running_loop().time() + 5.0)


async def test_a_closed_store_says_so(place: Place) -> None:
    async with opened(place) as store:
        pass
    with pytest.raises(StoreError, match="closed"):
        await store.experiment_started("ranker-v2", T0)
