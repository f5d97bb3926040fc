"""The serving process's load as shadow mode reads it: this process's CPU over a window, as a share of a core."""

from __future__ import annotations

import asyncio
import time

import pytest

from sidecar.serving.saturation import Saturation

pytestmark = pytest.mark.anyio


def burn(seconds: float) -> None:
    """Keep this thread on the CPU for ``seconds`` of wall time."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_window_spent_computing_is_busy_and_one_spent_waiting_is_not() -> None:
    # A low limit: on a shared CI machine the loop may not get a whole core, but it gets far more than 0.3.
    saturation = Saturation(limit=0.3)
    burn(0.3)
    saturation.sample()
    assert saturation.busy and saturation.share > 0.3
    time.sleep(0.3)
    saturation.sample()
    assert not saturation.busy and saturation.share < 0.3


async def test_run_samples_from_its_start_and_until_cancelled() -> None:
    saturation = Saturation(limit=0.3, interval=0.1)
    burn(0.2)  # start-up's CPU: not the proxy's load
    task = asyncio.create_task(saturation.run())
    await asyncio.sleep(0.25)
    assert not saturation.busy and saturation.share < 0.3
    burn(0.3)  # the loop itself busy; the sample it held up runs first once it is free, and sees it
    await asyncio.sleep(0.02)
    assert saturation.busy
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


@pytest.mark.parametrize(("limit", "interval"), [(0.0, 0.25), (-1.0, 0.25), (0.8, 0.0)])
def test_bad_bounds_are_refused(limit: float, interval: float) -> None:
    with pytest.raises(ValueError):
        Saturation(limit, interval=interval)
