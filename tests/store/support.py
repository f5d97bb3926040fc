"""What the store's tests share: records, a hand-moved clock, and a store at a :class:`Place` on either backend."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecar.records import PredictionRecord
from sidecar.store import FILENAME, Outcome, PredictionStore
from tests.records import make_record

__all__ = ["SLOW", "T0", "Clock", "Place", "kinds", "opened", "record", "request"]

T0 = 1_764_144_638.0  # 2025-11-26T08:10:38Z
SLOW = 3600.0  # a flush interval no test waits for: writes happen when the test says


class Clock:
    """Unix seconds that a test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Place:
    """Where a test's store lives: a state directory, and for PostgreSQL the URL of a database of its own."""

    state_dir: Path
    url: str | None = None

    @property
    def backend(self) -> str:
        return "sqlite" if self.url is None else "postgres"

    def execute(self, sql: str) -> None:
        """Run a statement that returns no rows, from a connection of the test's own."""
        if self.url is None:
            connection = sqlite3.connect(self.state_dir / FILENAME)
            try:
                connection.executescript(sql)
            finally:
                connection.close()
            return
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as server:
            server.execute(sql)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Run ``sql`` against the store's database from a connection of the test's own."""
        if self.url is None:
            connection = sqlite3.connect(self.state_dir / FILENAME)
            try:
                return connection.execute(sql).fetchall()
            finally:
                connection.close()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as server:
            return server.execute(sql).fetchall()


def record(
    request_id: str,
    row: int = 0,
    *,
    timestamp: float = T0,
    model: str = "iris",
    features: dict[str, Any] | None = None,
    confidence: float | None = 0.9,
    variant: str = "primary",
) -> PredictionRecord:
    return make_record(
        timestamp=timestamp,
        request_id=request_id,
        row=row,
        model_name=model,
        model_version="3",
        variant=variant,
        features={"country": "DE", "email": "alice@example.com"} if features is None else features,
        prediction="setosa",
        confidence=confidence,
        scores=[0.9, 0.06, 0.04],
        latency_ms=4.2,
        probability=0.25,
    )


def request(request_id: str, rows: int, *, timestamp: float = T0) -> list[PredictionRecord]:
    return [record(request_id, i, timestamp=timestamp) for i in range(rows)]


def kinds(outcomes: list[Outcome]) -> list[str]:
    return [outcome.kind for outcome in outcomes]


@asynccontextmanager
async def opened(place: Place | Path, **options: Any) -> AsyncIterator[PredictionStore]:
    """A started store at ``place``, writing only when the test flushes, closed afterwards."""
    if isinstance(place, Path):
        place = Place(place)
    options.setdefault("flush_seconds", SLOW)
    options.setdefault("clock", Clock())
    store = PredictionStore(place.state_dir, url=place.url, **options)
    await store.start()
    try:
        yield store
    finally:
        await store.close(asyncio.get_running_loop().time() + 5.0)
