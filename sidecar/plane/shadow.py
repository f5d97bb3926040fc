"""Shadow mode in process mode: the proxy queues the mirrors, the monitoring process sends them.

Sending a mirror costs about what forwarding a request does (the client's
write, parse and read, and a task per mirror), and on the proxy's own loop
that was paid by the clients: measured with ``benchmarks/experiment_overhead``
at 32 connections, shadow mode's p50 was 1.43x and its p99 2.1-2.2x no
experiment's. In process mode the proxy's :class:`RemoteShadow` only admits
a mirror (the same bounds and drops as :class:`~sidecar.experiments.shadow.Shadow`'s)
and keeps it, for the :class:`~sidecar.plane.supervisor.MonitorLink` to take
in batches and write to the monitoring process as one ``MIRRORS`` frame each
(a pickle, about 1 us per mirror). There a Shadow of its own sends them, at
that process's idle priority, and hands each answer straight to the capture
worker's comparison. When the cores are busy with served traffic the mirrors
wait, then drop and count: they never take the proxy's turn.

Every mirror still ends in exactly one outcome. Those the serving side
decided (dropped before they were handed over) are counted here; the
monitoring process reports its own Shadow's counts every second
(:meth:`RemoteShadow.report`), and ``mlsidecar_shadow_requests_total``, on the
serving process's ``/metrics``, is the sum. A monitoring process that ends
takes its reports with it: :meth:`RemoteShadow.fold` keeps what it last
reported and counts the mirrors it was handed but never reported on as
``dropped_restart`` (or ``dropped_shutdown`` at a stop).

Usage::

    remote = RemoteShadow(experiment="ranker-v2", queue_size=1000, queue_max_bytes=16 << 20, captured=capture.captured)
    app = ProxyApp(client, metrics, capture, variant="control", send_timeout=30,
                   mirror=Mirror(remote, max_body_bytes=16 << 20))
    link = MonitorLink(settings, capture, metrics, flags, variants, shadow=remote)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping

from sidecar.experiments.shadow import OUTCOMES, MirrorQueue, MirrorRequest, Outcome
from sidecar.records import Exchange
from sidecar.serving.saturation import Saturation

__all__ = ["RemoteShadow"]


class RemoteShadow(MirrorQueue):
    """The proxy's shadow queue in process mode; see the module docstring.

    ``outcomes`` holds the serving side's own counts (its drops, and what
    :meth:`fold` kept of monitoring processes that ended); :meth:`totals`
    adds the running monitoring process's last report.

    Usage::

        remote.submit("POST", b"/predict", lines, count, body, "req-1")   # the proxy, O(1)
        batch = await remote.get(64)                                      # the link
        remote.handed(len(batch))                                         # written to the monitoring process
        remote.report({"sent": 60, ...})                                  # its counts, each second
        remote.totals()["sent"]
    """

    def __init__(
        self,
        *,
        experiment: str,
        queue_size: int,
        queue_max_bytes: int,
        captured: Callable[[str], Exchange | None] | None = None,
        saturation: Saturation | None = None,
    ) -> None:
        super().__init__(
            experiment=experiment,
            queue_size=queue_size,
            queue_max_bytes=queue_max_bytes,
            captured=captured,
            saturation=saturation,
        )
        self._pending: deque[MirrorRequest] = deque()
        self._waiter: asyncio.Future[None] | None = None
        # Mirrors handed to the running monitoring process, and its last report of their outcomes.
        self._handed = 0
        self._remote: dict[Outcome, int] = dict.fromkeys(OUTCOMES, 0)

    def _enqueue(self, request: MirrorRequest) -> None:
        self._pending.append(request)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._pending

    async def get(self, limit: int, max_bytes: int | None = None) -> list[MirrorRequest]:
        """Wait until a mirror is queued, then take what :meth:`get_nowait` takes."""
        while not self._pending:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self.get_nowait(limit, max_bytes)

    def get_nowait(self, limit: int, max_bytes: int | None = None) -> list[MirrorRequest]:
        """Up to ``limit`` mirrors, oldest first, and within ``max_bytes`` of bodies (at least one)."""
        pending = self._pending
        taken: list[MirrorRequest] = []
        size = 0
        while pending and len(taken) < limit:
            body = len(pending[0].body)
            if taken and max_bytes is not None and size + body > max_bytes:
                break
            taken.append(pending.popleft())
            size += body
        self.queued -= len(taken)
        self.queued_bytes -= size
        return taken

    def handed(self, count: int) -> None:
        """``count`` mirrors were written to the monitoring process."""
        self._handed += count

    def drop(self, requests: list[MirrorRequest], outcome: Outcome) -> None:
        """Taken off the queue, but never handed over (no monitoring process, or the stop's deadline passed)."""
        self.outcomes[outcome] += len(requests)

    def close(self) -> None:
        """Refuse new mirrors (``dropped_shutdown``); those queued are still handed over by the link's stop."""
        self._closing = True

    def report(self, outcomes: Mapping[Outcome, int]) -> None:
        """The running monitoring process's counts, cumulative since it started."""
        self._remote = {outcome: outcomes.get(outcome, 0) for outcome in OUTCOMES}

    def fold(self, lost: Outcome) -> None:
        """The monitoring process ended: keep its last report, and count the mirrors it never reported on."""
        reported = sum(self._remote.values())
        self.outcomes[lost] += max(self._handed - reported, 0)
        for outcome, n in self._remote.items():
            self.outcomes[outcome] += n
        self._remote = dict.fromkeys(OUTCOMES, 0)
        self._handed = 0

    def totals(self) -> dict[Outcome, int]:
        """Every mirror's outcome so far: the serving side's counts and the monitoring process's last report."""
        remote = self._remote
        return {outcome: n + remote[outcome] for outcome, n in self.outcomes.items()}
