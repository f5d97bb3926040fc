"""Whether the serving process is saturated: the CPU it used over the last window, as a share of one core.

The proxy is one event loop: at a share near 1 it has no time to spare, and
any more work on the machine comes out of its clients' latency. Shadow mode
asks here before it queues a mirror (:class:`~sidecar.experiments.shadow.MirrorQueue`):
a mirror is best-effort, so while the proxy is busy it is dropped and
counted (``dropped_busy``) rather than sent. Sending it from the monitoring
process at idle priority was not enough on its own: measured with
``benchmarks/experiment_overhead`` at 32 connections on 2 cores, the
mirrors still took the proxy from 25.1k to 19.3k requests a second (p50
1.30x no experiment's), through the kernel's share of the extra loopback
exchanges and the cores and caches the two processes share.

One sample every ``interval`` seconds (``time.process_time`` and the
monotonic clock), so a request pays one attribute read.

Usage::

    saturation = Saturation(limit=0.8)
    task = asyncio.create_task(saturation.run())
    if saturation.busy: ...   # on the request path
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["Saturation"]


class Saturation:
    """``busy`` while this process used at least ``limit`` of a core over the last ``interval`` seconds.

    Usage::

        saturation = Saturation(limit=0.8, interval=0.25)
        saturation.sample()   # what run() does each interval
        saturation.share      # 0.93: the last window's CPU over its wall time
    """

    __slots__ = ("limit", "interval", "busy", "share", "_cpu", "_wall")

    def __init__(self, limit: float, *, interval: float = 0.25) -> None:
        if not limit > 0:
            raise ValueError(f"limit must be positive, not {limit!r}")
        if not interval > 0:
            raise ValueError(f"interval must be positive, not {interval!r}")
        self.limit = limit
        self.interval = interval
        self.busy = False
        self.share = 0.0
        self._cpu = time.process_time()
        self._wall = time.monotonic()

    def sample(self) -> None:
        """Close the window since the last sample: its share of a core, and whether that is ``busy``."""
        cpu, wall = time.process_time(), time.monotonic()
        elapsed = wall - self._wall
        if elapsed <= 0:
            return
        self.share = (cpu - self._cpu) / elapsed
        self.busy = self.share >= self.limit
        self._cpu, self._wall = cpu, wall

    async def run(self) -> None:
        """Sample every ``interval`` until cancelled, from now: the CPU spent starting up is no load."""
        self.busy = False
        self._cpu, self._wall = time.process_time(), time.monotonic()
        while True:
            await asyncio.sleep(self.interval)
            self.sample()
