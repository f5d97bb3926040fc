"""The monitoring process: capture worker, sinks, monitors, store, labels and alerts, off the proxy's CPU.

The serving process starts it (:mod:`sidecar.plane.supervisor`) with two
private sockets. Exchanges arrive on the data channel in batches and go
straight to :meth:`CaptureWorker.process`; the kernel's socket buffer and
the serving process's bounded hand-off are the queue, so a slow monitoring
side makes the serving side drop and count, never wait. On the control
channel it answers admin requests and scrapes, receives the Layer-1 mirror,
and sends the alert hooks' actions back.

It exits when the data channel ends: after an ``END`` message (a graceful
stop: it drains within ``SIDECAR_FLUSH_TIMEOUT_SECONDS``) or at end of
stream (the serving process is gone: it drains the same way, so a parent
killed by the OOM killer still leaves complete log files).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette

from sidecar.admin.app import create_admin_app
from sidecar.admin.history import History
from sidecar.assembly import (
    Alerting,
    Components,
    build_alerting,
    build_components,
    build_experiment_runner,
    build_shadow,
    build_shadow_runner,
    experiment_routes_of,
    primary_variant,
    register_monitoring,
)
from sidecar.config import Settings
from sidecar.experiments.data import Routing
from sidecar.experiments.shadow import Outcome, Shadow
from sidecar.monitoring.evaluator import status_json
from sidecar.plane import frames
from sidecar.plane.asgi import call_app
from sidecar.plane.mirror import MirrorFlags, RemoteSampler, ServingMirror
from sidecar.prometheus import create_registry
from sidecar.records import ExchangeFields
from sidecar.upstream.client import UpstreamClient

__all__ = ["NICENESS", "main"]

logger = logging.getLogger("sidecar.plane.monitor")

# The monitoring process runs at SCHED_IDLE: the kernel gives it a CPU only when nothing else of
# normal priority wants one, so it never preempts the proxy. Measured (capture_overhead, quiet,
# two runs): at nice 10 alone, rate 1 added 1.4 ms to p99 at one connection and made p99 at 32
# connections 2.3x rate 0's (the proxy lost its core to the monitor for whole timeslices); at
# SCHED_IDLE, +0.02 and +0.34 ms, and 1.3-1.4x, with every kept exchange still monitored.
# When no CPU is left at all, the bounded queue fills and the proxy drops and counts, as the
# capture contract has always said. The nice value stays for kernels without SCHED_IDLE.
# SCHED_IDLE begins once the process is ready: start-up (imports, the reference, the store)
# takes about a second of CPU, and at SCHED_IDLE on saturated cores it got so little that it
# missed the serving process's 30 s start-up wait; at nice 10 it still gets its share.
NICENESS = 10
_PROGRESS_SECONDS = 1.0


def main(settings: Settings, data: socket.socket, control: socket.socket, variants: tuple[str, ...]) -> None:
    """The process's entry point (a ``multiprocessing`` target)."""
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[monitor]: %(message)s",
        stream=sys.stderr,
    )
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(MonitoringProcess(settings, variants).run(data, control))


def _idle() -> None:
    """Every thread of this process to SCHED_IDLE (see :data:`NICENESS`); threads started later inherit it.

    Linux schedules threads, not processes: the writer and sink threads started before this
    are moved one by one. Without SCHED_IDLE (not Linux), nice 10 stays.
    """
    if not hasattr(os, "SCHED_IDLE"):
        return
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setscheduler(int(task), os.SCHED_IDLE, os.sched_param(0))


class MonitoringProcess:
    """Everything the monitoring plane runs, wired to the serving process through two channels.

    Usage (in the child process)::

        await MonitoringProcess(settings, ("primary",)).run(data_socket, control_socket)
    """

    def __init__(self, settings: Settings, variants: tuple[str, ...]) -> None:
        self.settings = settings
        self.variants = variants
        self.processed = 0
        self._control: asyncio.StreamWriter | None = None

    def _send(self, message: tuple[Any, ...]) -> None:
        if self._control is not None and not self._control.is_closing():
            self._control.write(frames.encode(message))

    async def run(self, data_socket: socket.socket, control_socket: socket.socket) -> None:
        data, _ = await asyncio.open_unix_connection(sock=data_socket)
        control_reader, self._control = await asyncio.open_unix_connection(sock=control_socket)
        s = self.settings
        try:
            parts = build_components(s)
        except Exception as exc:  # the serving process validated these files; they changed since
            self._send((frames.FAILED, str(exc)))
            await self._control.drain()
            return
        mirror = ServingMirror(self.variants)
        flags = MirrorFlags(
            fallback_available=s.fallback_url is not None,
            send=lambda name, value, source, reason: self._send((frames.FLAG, name, value, source, reason)),
        )
        parts.capture.sampler = RemoteSampler(
            parts.capture.sampler, lambda reason, hold: self._send((frames.TRIGGER, reason, hold))
        )
        # The router is the serving process's: its counts come with each SERVING message.
        experiments = build_experiment_runner(
            s, parts, mirror, lambda: None if mirror.routing is None else Routing(*mirror.routing)
        )
        # A shadow experiment's comparison: control's serving signals come through the mirror, as a split's do.
        comparison = build_shadow_runner(s, parts, mirror)
        # ...and its mirrors, which the serving process hands over to be sent from here (sidecar.plane.shadow).
        # Each answer goes to the worker, and so to the comparison, at once: there is no hand-off to cross.
        built = build_shadow(s, parts, lambda exchange: _deliver(parts, exchange))
        shadow = None if built is None else built[0]
        alerting = build_alerting(s, parts, mirror, flags, primary_variant(parts.experiment), experiments)
        # The process_* and python_* families describe the serving process, whose registry has them.
        registry = create_registry(s.model_name, max_series=s.metrics_max_series, process=False)
        register_monitoring(registry, parts, alerting, s.model_name, experiments, comparison)
        history = History(parts.monitors, parts.performance, mirror)
        app = create_admin_app(
            registry,
            None,
            parts.monitors,
            parts.labels,
            parts.performance,
            alerting.engine,
            flags,
            admin_token=s.admin_token,
            labels_max_bytes=s.labels_max_bytes,
            history=history,
            eval_interval_seconds=s.eval_interval_seconds,
            routes=experiment_routes_of(s, parts, experiments or comparison),
            experiment=parts.experiment,
            experiments=experiments or comparison,
            shadow_outcomes=None if shadow is None else lambda: _outcomes(mirror.shadow, shadow),
        )
        outgoing = [*alerting.clients, *(c for c in (parts.webhook,) if c is not None)]
        loop = asyncio.get_running_loop()
        try:
            for sink in parts.sinks:
                await sink.start()
            await parts.store.start()
            for client in outgoing:
                await client.open()
            if shadow is not None:
                await shadow.start()
        except Exception as exc:
            self._send((frames.FAILED, str(exc)))
            await self._control.drain()
            await self._close(parts, alerting, outgoing, [], loop.time(), shadow)
            return
        # What was built at start-up lives as long as the process: the cyclic collector need not
        # walk it again. Without this, a full collection of the monitors' heap took 44 ms.
        gc.freeze()

        def on_control(message: tuple[Any, ...]) -> None:
            kind = message[0]
            if kind == frames.SERVING:
                state = message[1]
                mirror.update(state)
                flags.mirror(state)
                parts.capture.metrics.serving_dropped = state.dropped
            elif kind == frames.CALL:
                _, call_id, what, payload = message
                task = loop.create_task(self._answer(call_id, what, payload, app, registry))
                # Held until done (the loop keeps only weak references), then let go: one per admin call.
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        tasks: set[asyncio.Task[None]] = set()
        background = [
            loop.create_task(parts.monitors.run(s.eval_interval_seconds), name="evaluator"),
            loop.create_task(parts.performance.run(s.eval_interval_seconds), name="performance"),
            loop.create_task(alerting.runner.run(s.eval_interval_seconds), name="alerts"),
            loop.create_task(alerting.notifier.run(), name="alert-notifier"),
            loop.create_task(history.run(s.eval_interval_seconds), name="history"),
            *(
                []
                if experiments is None
                else [loop.create_task(experiments.run(s.experiment_interval_seconds), name="experiments")]
            ),
            *(
                []
                if comparison is None
                else [loop.create_task(comparison.run(s.experiment_interval_seconds), name="shadow-comparison")]
            ),
            loop.create_task(self._read_control(control_reader, on_control), name="control"),
            loop.create_task(self._report(parts, shadow), name="progress"),
        ]
        self._send((frames.READY,))
        _idle()
        # The data channel: batches until END or the end of the stream.
        worker = parts.worker
        while True:
            message = await frames.read_frame(data)
            if message is None or message[0] == frames.END:
                break
            if message[0] == frames.MIRRORS:
                if shadow is not None:
                    for request in message[1]:
                        shadow.put(request)
                continue
            batch = message[1]
            try:
                worker.process(batch)
            except Exception:  # process() already fails open per exchange; this is a bug
                logger.exception("monitoring: a batch failed; continuing")
            # Captures only: the challenger's answers come to the worker here, from this process's Shadow.
            self.processed += len(batch)
            # Let scrapes, admin calls and the evaluator in between batches.
            await asyncio.sleep(0)
        deadline = loop.time() + s.flush_timeout_seconds
        self._send((frames.PROGRESS, self.processed, self._status(parts)))
        await self._close(parts, alerting, outgoing, [*background, *tasks], deadline, shadow)

    async def _close(
        self,
        parts: Components,
        alerting: Alerting,
        outgoing: list[UpstreamClient],
        tasks: list[asyncio.Task[None]],
        deadline: float,
        shadow: Shadow | None = None,
    ) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if shadow is not None:
            # The mirrors handed over before END, within the flush budget, while the worker and the store still
            # take their answers; then the final count, which the serving process keeps (RemoteShadow.fold).
            await shadow.close(deadline)
            self._send((frames.SHADOW, dict(shadow.outcomes)))
        await parts.monitors.close()
        await asyncio.gather(*(sink.close(deadline) for sink in parts.sinks))
        await parts.store.close(deadline)
        await parts.retrainer.close(deadline)
        await alerting.notifier.close(deadline)
        for client in outgoing:
            await client.close()
        if self._control is not None:
            self._control.close()

    @staticmethod
    async def _read_control(reader: asyncio.StreamReader, handle: Callable[[tuple[Any, ...]], None]) -> None:
        while (message := await frames.read_frame(reader)) is not None:
            handle(message)

    async def _answer(self, call_id: int, what: str, payload: Any, app: Starlette, registry: CollectorRegistry) -> None:
        try:
            if what == "metrics":
                encoder, content_type = choose_encoder(payload)
                reply: Any = (encoder(registry), content_type)
            else:
                reply = await call_app(app, *payload)
        except Exception as exc:
            logger.exception("monitoring: answering a %s call failed", what)
            reply = exc.__class__.__name__
        self._send((frames.REPLY, call_id, reply))

    def _status(self, parts: Components) -> dict[str, Any]:
        return {"reference": status_json(parts.monitors.snapshot.reference), "store": parts.store.status()}

    async def _report(self, parts: Components, shadow: Shadow | None) -> None:
        # How far processing got (what a crash would lose is what was sent after this), and the
        # reference status /readyz shows; in shadow mode, what became of the mirrors handed over.
        while True:
            self._send((frames.PROGRESS, self.processed, self._status(parts)))
            if shadow is not None:
                self._send((frames.SHADOW, dict(shadow.outcomes)))
            await asyncio.sleep(_PROGRESS_SECONDS)


def _deliver(parts: Components, exchange: ExchangeFields) -> bool:
    """A challenger's answer to the capture worker, which gives it to the comparison; never refused."""
    parts.worker.process([exchange])
    return True


def _outcomes(serving: dict[Outcome, int] | None, shadow: Shadow) -> dict[Outcome, int]:
    """Every mirror's outcome for the status page: the serving process's counts (as last mirrored) and this
    process's Shadow's."""
    return {outcome: n + (0 if serving is None else serving.get(outcome, 0)) for outcome, n in shadow.outcomes.items()}
