"""The serving process's side of the monitoring process: start it, feed it, restart it, stop it.

:class:`MonitorLink` takes the captured exchanges off the capture hand-off
(:class:`~sidecar.capture.handoff.Handoff`, bounded in count and bytes) and
writes them to the monitoring process in batches, one pickle per batch. The
proxy's event loop pays for that and nothing else: parsing, the sinks, the
monitors, the store, the evaluator, scrapes of the monitoring families and
the admin API all run in the other process, on the other core, under their
own GIL and their own garbage collector.

A slow monitoring process fills the socket, then the hand-off; the proxy then
drops and counts (``queue_full``), as it always has. A monitoring process
that ends (a crash, the OOM killer) is restarted with backoff and counted in
``mlsidecar_monitor_restarts_total``; the exchanges it took with it are
counted as dropped (``monitor_restart``). Meanwhile the proxy serves as
before, ``/healthz`` and ``/readyz`` answer, and the monitoring endpoints
answer 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import socket
import time
from typing import Any

from prometheus_client import Counter, Gauge

from sidecar.capture.handoff import Capture
from sidecar.config import Settings
from sidecar.exceptions import SidecarError
from sidecar.experiments.routing import Router
from sidecar.plane import frames
from sidecar.plane.mirror import serving_state
from sidecar.plane.shadow import RemoteShadow
from sidecar.prometheus import counter, gauge
from sidecar.serving.flags import Flags
from sidecar.serving.metrics import ServingCounts

__all__ = ["MonitorLink", "MonitorUnavailable"]

logger = logging.getLogger("sidecar.plane.supervisor")

# A batch: as many exchanges as a loop turn gathered, up to these bounds, in one pickle and one write.
# The pickle runs on the proxy's loop, about 1 us per exchange: at 256 a batch held the loop for up
# to 1.2 ms (its p99) and rate 1's p99 at 32 connections was 4.9 ms; at 64, 0.3 ms and 4.1-4.3 ms,
# at the same throughput (measured on the benchmark's traffic, two runs each).
_BATCH = 64
_BATCH_BYTES = 1 << 20
# When the hand-off runs dry, wait this long for more, so that light traffic is still sent in batches.
_GATHER_SECONDS = 0.005
_STATE_SECONDS = 1.0
# Importing numpy, scipy and the monitors takes seconds on a cold disk.
_START_TIMEOUT = 60.0
# A monitoring process that reports no progress for this long is stuck: it is killed and restarted.
_STUCK_SECONDS = 30.0
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 30.0
# A process that ran this long before it ended starts the backoff afresh.
_STABLE_SECONDS = 60.0


class MonitorUnavailable(SidecarError):
    """The monitoring process is not running (starting, restarting or stopped)."""


def _context() -> Any:
    # forkserver: each monitoring process is forked from a small server process that
    # imported the monitoring code once, so a restart takes milliseconds, and it never
    # inherits the proxy's event loop, sockets or threads, which plain fork would copy.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["sidecar.plane.monitor"])
    return context


class MonitorLink:
    """The serving side of the monitoring process.

    Usage::

        link = MonitorLink(settings, capture, proxy_metrics, flags, ("primary",))
        registry.register(link.restarts); registry.register(link.up)
        await link.start()                 # SidecarError if the monitoring side cannot start
        status, headers, body = await link.call("http", ("GET", "/api/v1/drift", b"", [], b""), timeout=10)
        await link.stop(deadline)          # after the proxy drained: hand over what is queued, wait for it
    """

    def __init__(
        self,
        settings: Settings,
        capture: Capture,
        counts: ServingCounts,
        flags: Flags,
        variants: tuple[str, ...],
        *,
        router: Router | None = None,
        shadow: RemoteShadow | None = None,
    ) -> None:
        self.settings = settings
        self.capture = capture
        self.counts = counts
        self.flags = flags
        self.variants = variants
        # A split experiment's router, whose counts the monitoring side's analysis reads through the mirror.
        self.router = router
        # A shadow experiment's queue: its mirrors go to the monitoring process to be sent, their outcomes come
        # back (sidecar.plane.shadow).
        self.shadow = shadow
        model = settings.model_name
        self.restarts: Counter = counter(
            "monitor_restarts_total",
            "Times the monitoring process ended unexpectedly and was restarted; serving went on.",
            ("model",),
        )
        self._restarts = self.restarts.labels(model)
        self.up: Gauge = gauge(
            "monitor_up", "1 while the monitoring process runs and takes captures, else 0.", ("model",)
        )
        self._up_gauge = self.up.labels(model)
        self.status: dict[str, Any] = {}
        self._process: Any = None
        self._data: asyncio.StreamWriter | None = None
        self._control: asyncio.StreamWriter | None = None
        self._ready = asyncio.Event()
        self._exited = asyncio.Event()
        self._started: asyncio.Future[None] | None = None
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False
        self._sent = 0
        self._processed = 0
        self._progress_at = 0.0
        self._spawned_at = 0.0
        self._backoff = _BACKOFF_FIRST

    @property
    def running(self) -> bool:
        return self._ready.is_set()

    def monitoring_json(self) -> dict[str, Any]:
        """The informational part of ``/readyz``: the reference in use, and the monitoring process's state."""
        process = {"state": "running", "pid": self.pid} if self.running else {"state": "restarting"}
        return {**self.status, "monitoring": process}

    @property
    def pid(self) -> int | None:
        """The monitoring process's id while it runs."""
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        """Start the monitoring process and wait until it is ready; SidecarError with its reason if it cannot."""
        await self._spawn()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._send_exchanges(), name="monitor-link-send"),
            loop.create_task(self._send_state(), name="monitor-link-state"),
        ]
        if self.shadow is not None:
            self._tasks.append(loop.create_task(self._send_mirrors(self.shadow), name="monitor-link-mirrors"))

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        data_parent, data_child = socket.socketpair()
        control_parent, control_child = socket.socketpair()
        # Imported here: the monitoring process's module builds on the assembly, which builds this link.
        from sidecar.plane import monitor

        process = _context().Process(
            target=monitor.main,
            args=(self.settings, data_child, control_child, self.variants),
            name="ml-sidecar-monitor",
            daemon=True,
        )
        self._process = process
        self._exited.clear()
        self._started = loop.create_future()
        try:
            # start() talks to the fork server (and starts it the first time): off the loop.
            await asyncio.to_thread(process.start)
        finally:
            data_child.close()
            control_child.close()
        _, self._data = await asyncio.open_unix_connection(sock=data_parent)
        control_reader, self._control = await asyncio.open_unix_connection(sock=control_parent)
        self._spawned_at = self._progress_at = time.monotonic()
        self._sent = self._processed = 0
        # Kept: the loop holds tasks only weakly.
        self._reader = loop.create_task(self._read_control(control_reader), name="monitor-link-control")
        try:
            await asyncio.wait_for(asyncio.shield(self._started), _START_TIMEOUT)
        except TimeoutError:
            await self._kill()
            raise SidecarError(f"the monitoring process did not start within {_START_TIMEOUT:g}s") from None
        except SidecarError:
            await self._kill()
            raise
        self._ready.set()
        self._up_gauge.set(1)
        logger.info("monitoring process %d started", process.pid)

    async def _read_control(self, reader: asyncio.StreamReader) -> None:
        while (message := await frames.read_frame(reader)) is not None:
            try:
                self._on_message(message)
            except Exception:
                logger.exception("monitor link: a message from the monitoring process failed: %r", message[0])
        self._on_exit()

    def _on_message(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == frames.PROGRESS:
            self._processed, self.status = message[1], message[2]
            self._progress_at = time.monotonic()
        elif kind == frames.REPLY:
            future = self._calls.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(message[2])
        elif kind == frames.READY:
            if self._started is not None and not self._started.done():
                self._started.set_result(None)
        elif kind == frames.FAILED:
            if self._started is not None and not self._started.done():
                self._started.set_exception(SidecarError(message[1]))
        elif kind == frames.FLAG:
            _, name, value, source, reason = message
            try:
                self.flags.set(name, value, source=source, reason=reason)
            except (KeyError, ValueError) as exc:
                logger.warning("monitor link: flag %s not set: %s", name, exc)
        elif kind == frames.TRIGGER:
            self.capture.sampler.activate(message[1], message[2])
        elif kind == frames.SHADOW:
            if self.shadow is not None:
                self.shadow.report(message[1])

    def _on_exit(self) -> None:
        """The control channel ended: the process exited, or is about to."""
        was_ready = self._ready.is_set()
        self._ready.clear()
        self._up_gauge.set(0)
        self._exited.set()
        for future in self._calls.values():
            if not future.done():
                future.set_exception(MonitorUnavailable("the monitoring process ended"))
        self._calls.clear()
        if self._started is not None and not self._started.done():
            self._started.set_exception(SidecarError("the monitoring process ended while starting; see its log"))
        for writer in (self._data, self._control):
            if writer is not None:
                writer.close()
        self._data = self._control = None
        if self.shadow is not None:
            # Its last report stands; the mirrors it never reported on are lost with it.
            self.shadow.fold("dropped_shutdown" if self._stopping else "dropped_restart")
        if self._stopping or not was_ready:
            return
        if time.monotonic() - self._spawned_at >= _STABLE_SECONDS:
            # It ran long enough to count as healthy: this is no crash loop, so no long wait.
            self._backoff = _BACKOFF_FIRST
        lost = self._sent - self._processed
        self.capture.metrics.dropped["monitor_restart"] += lost
        self._restarts.inc()
        logger.error(
            "the monitoring process ended unexpectedly (exit code %s); %d captured exchanges lost with it;"
            " restarting it in %gs. Serving goes on.",
            None if self._process is None else self._process.exitcode,
            lost,
            self._backoff,
        )
        self._tasks.append(asyncio.get_running_loop().create_task(self._restart(), name="monitor-link-restart"))

    async def _restart(self) -> None:
        await self._kill()
        while not self._stopping:
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
            if self._stopping:
                return
            try:
                await self._spawn()
                return
            except SidecarError as exc:
                logger.error("the monitoring process could not restart: %s; retrying in %gs", exc, self._backoff)

    async def _kill(self) -> None:
        process = self._process
        if process is None:
            return
        await asyncio.to_thread(process.join, 1.0)
        if process.exitcode is None:
            process.kill()
            await asyncio.to_thread(process.join, 5.0)
        with contextlib.suppress(ValueError):
            process.close()
        self._process = None

    async def _send_exchanges(self) -> None:
        queue = self.capture.queue
        dropped = self.capture.metrics.dropped
        while True:
            await self._ready.wait()
            batch = await queue.get(_BATCH, _BATCH_BYTES)
            writer = self._data
            # Only captures: in this mode the challenger's answers (sidecar.experiments.tap) arrive in the
            # monitoring process, which sends the mirrors, and never cross the hand-off.
            captures = len(batch)
            if writer is None or writer.is_closing():
                dropped["monitor_restart"] += captures
                continue
            writer.write(frames.encode((frames.EXCHANGES, batch)))
            self._sent += captures
            with contextlib.suppress(ConnectionError):
                # Waits only while the socket is full; the hand-off then fills, and drops.
                await writer.drain()
            if len(batch) < _BATCH and queue.empty():
                await asyncio.sleep(_GATHER_SECONDS)

    async def _send_mirrors(self, shadow: RemoteShadow) -> None:
        # As _send_exchanges, on the same data channel: frames are written whole, so the two never interleave.
        while True:
            await self._ready.wait()
            batch = await shadow.get(_BATCH, _BATCH_BYTES)
            writer = self._data
            if writer is None or writer.is_closing():
                shadow.drop(batch, "dropped_restart")
                continue
            writer.write(frames.encode((frames.MIRRORS, batch)))
            shadow.handed(len(batch))
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    async def _send_state(self) -> None:
        while True:
            await asyncio.sleep(_STATE_SECONDS)
            control = self._control
            if control is None or not self._ready.is_set():
                continue
            state = serving_state(
                self.counts, self.flags, self.capture.metrics.dropped, time.time(), self.router, self.shadow
            )
            control.write(frames.encode((frames.SERVING, state)))
            if time.monotonic() - self._progress_at > _STUCK_SECONDS and self._process is not None:
                logger.error("the monitoring process reported nothing for %gs: killing it", _STUCK_SECONDS)
                self._process.kill()

    async def call(self, kind: str, payload: Any, *, timeout: float) -> Any:
        """Ask the monitoring process (an admin request, a scrape); MonitorUnavailable if it is not running."""
        control = self._control
        if control is None or not self._ready.is_set():
            raise MonitorUnavailable("the monitoring process is restarting")
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        control.write(frames.encode((frames.CALL, call_id, kind, payload)))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise MonitorUnavailable(f"the monitoring process did not answer within {timeout:g}s") from None
        finally:
            self._calls.pop(call_id, None)

    async def stop(self, deadline: float) -> None:
        """Hand over what is queued, end the data channel, and wait until the process drained and exited.

        All by ``deadline`` (``loop.time()``), and a second more for the process to exit before it is killed.
        """
        self._stopping = True
        loop = asyncio.get_running_loop()
        queue = self.capture.queue
        shadow = self.shadow
        if shadow is not None:
            # The proxy has drained: no request will be mirrored any more.
            shadow.close()
        while (
            not (queue.empty() and (shadow is None or shadow.empty()))
            and self._ready.is_set()
            and loop.time() < deadline
        ):
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # What could not be handed over in time is lost to monitoring: count it.
        left = queue.get_nowait(queue.qsize())
        self.capture.metrics.dropped["queue_full"] += len(left)
        if shadow is not None:
            shadow.drop(shadow.get_nowait(shadow.queued), "dropped_shutdown")
        writer = self._data
        if writer is not None and not writer.is_closing():
            writer.write(frames.encode((frames.END,)))
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.drain(), max(deadline - loop.time(), 0.01))
        # The monitoring process drains within the same budget, from when END arrives; allow it a
        # second more to exit before it is killed.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), max(deadline - loop.time(), 0.0) + 1.0)
        await self._kill()
