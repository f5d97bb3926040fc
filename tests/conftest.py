from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from sidecar.server import Sidecar
from tests import servers
from tests.postgres import Postgres, run_postgres
from tests.servers import Upstream, run_sidecar, run_upstream


@pytest.fixture(autouse=True)
def monitoring_plane(request: pytest.FixtureRequest) -> Iterator[None]:
    """The plane of every sidecar the test starts: the default (process), or inline where the test is marked.

    Tests that read the monitoring objects themselves (a subscriber's records,
    a snapshot, the store) are marked ``monitoring_inline``: in process mode
    those objects live in another process. Everything else runs the shipped
    default, so the whole suite exercises the monitoring process.
    """
    servers.default_plane = "inline" if request.node.get_closest_marker("monitoring_inline") else "process"
    yield
    # Back to the default, for fixtures of a wider scope set up before the next test.
    servers.default_plane = "process"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with run_upstream() as server:
        yield server


@pytest.fixture
async def sidecar(upstream: Upstream) -> AsyncIterator[Sidecar]:
    async with run_sidecar(upstream.url) as running:
        yield running


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One real PostgreSQL server for the session (tests/postgres.py); each test takes its own database."""
    with run_postgres() as server:
        yield server
