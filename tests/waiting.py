"""Waiting in a test for something a background task does, with a deadline instead of a fixed sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["wait_until"]


async def wait_until(condition: Callable[..., object], timeout: float = 5.0) -> None:
    """Poll ``condition()`` every 10 ms until it is true; fail the test after ``timeout`` seconds.

    ``Callable[..., object]``: a lambda that binds a loop variable through a default argument still fits.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
