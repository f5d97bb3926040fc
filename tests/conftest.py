from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sidecar.server import Sidecar
from tests.servers import Upstream, run_sidecar, run_upstream


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
