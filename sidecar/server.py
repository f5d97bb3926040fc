"""Run the proxy and admin apps in one process and one event loop.

One process with one loop is the unit of scale: run more replicas, not more
workers, so that every replica exports its own whole view to Prometheus.
Both ports speak uvicorn's httptools protocol within the client limits of
:mod:`sidecar.serving.limits` (head size, head time, connections), each port
with its own connection limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import Iterator
from types import TracebackType

import uvicorn

from sidecar.assembly import Alerting, Components, assemble
from sidecar.capture.worker import CaptureWorker
from sidecar.config import Settings
from sidecar.exceptions import SidecarError
from sidecar.labels.evaluate import PerformanceEvaluator
from sidecar.labels.ingest import LabelIngest
from sidecar.labels.retraining import Retrainer
from sidecar.monitoring.evaluator import DataMonitors
from sidecar.serving.coalesce import CoalescingProtocol
from sidecar.serving.limits import ClientLimits, ConnectionGuard, ConnectionMetrics
from sidecar.sinks import Sink
from sidecar.store import PredictionStore

__all__ = ["Sidecar"]

logger = logging.getLogger("sidecar")

# Longer than the idle timeout of common load balancers and ingresses (60 s),
# so the sidecar is never the side that closes a pooled connection just as
# the other side reuses it, which the client would see as a 502.
_KEEP_ALIVE_SECONDS = 75
# Files the sidecar opens besides client and upstream connections: listeners,
# the store, log files, notification clients, the event loop's own.
_RESERVED_FILES = 64


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to :class:`Sidecar`.

    Two servers share the loop, and uvicorn's own handlers would both claim
    SIGTERM, then re-raise it at exit, which ends the process with -15
    instead of 0.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int, variable: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only
    # when the listener's proto says TCP. Without it, Nagle's algorithm holds
    # the body write behind the header write until the client's delayed ACK,
    # about 40 ms per request on a kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SidecarError(f"{variable}: cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _limits(settings: Settings, max_connections: int) -> ClientLimits:
    return ClientLimits(
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        header_timeout=settings.header_timeout_seconds,
        max_connections=max_connections,
    )


def _check_file_limit(settings: Settings) -> None:
    """Warn when the process may run out of file descriptors before the connection limits bite.

    Past its descriptor limit the process can accept no connection at all,
    so the limits would protect nothing.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    pools = settings.upstream_max_connections * (1 if settings.fallback_url is None else 2)
    needed = settings.max_connections + settings.admin_max_connections + pools + _RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        logger.warning(
            "the process may open %d files (its descriptor limit) but SIDECAR_MAX_CONNECTIONS, "
            "SIDECAR_ADMIN_MAX_CONNECTIONS and the upstream pools need about %d: lower them, "
            "or raise the limit (ulimit -n)",
            soft,
            needed,
        )


class Sidecar:
    """The running sidecar: what :func:`~sidecar.assembly.assemble` built, served on two ports.

    This class only binds the sockets, opens the clients, starts the
    background tasks and both servers in order, and on shutdown drains them
    in order: the proxy's in-flight requests, then the capture queue, the
    store and the outgoing notifications, then the admin port.

    Usage::

        async with Sidecar(settings) as sidecar:
            print(sidecar.proxy_port, sidecar.admin_port)
            await sidecar.wait_stopped()  # until request_shutdown()
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        built = assemble(settings)
        self.flags, self.metrics, self.client = built.flags, built.metrics, built.client
        self.readiness, self.capture = built.readiness, built.capture
        self.components, self._alerting, self.monitor = built.components, built.alerting, built.monitor
        self._outgoing = built.outgoing
        self._history = built.history
        self._experiments = built.experiments
        self._comparison = built.comparison
        self._shadow = built.shadow
        self._saturation = built.saturation
        self._sampling: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []
        proxy_guard = ConnectionGuard("proxy", _limits(settings, settings.max_connections))
        admin_guard = ConnectionGuard("admin", _limits(settings, settings.admin_max_connections))
        built.registry.register(ConnectionMetrics(settings.model_name, (proxy_guard, admin_guard)))
        common = {
            "ws": "none",
            "lifespan": "off",
            "log_config": None,
            "access_log": False,
            # X-Forwarded-* is forwarded to the model as the client sent it, with
            # the peer appended; uvicorn must not rewrite the peer address first.
            "proxy_headers": False,
        }
        self._proxy = _Server(
            uvicorn.Config(
                built.proxy_app,
                # The upstream's own Date and Server headers pass through unchanged.
                server_header=False,
                date_header=False,
                timeout_keep_alive=_KEEP_ALIVE_SECONDS,
                # Typed int, but uvicorn hands it to asyncio.wait_for, which takes float seconds.
                timeout_graceful_shutdown=settings.shutdown_timeout_seconds,  # type: ignore[arg-type]
                # httptools, with each small response written in one send() (sidecar.serving.coalesce).
                http=proxy_guard.protocol(CoalescingProtocol),
                **common,  # type: ignore[arg-type]
            )
        )
        self._admin = _Server(
            uvicorn.Config(
                built.admin_app,
                server_header=False,
                http=admin_guard.protocol(),
                **common,  # type: ignore[arg-type]
            )
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.proxy_port = 0
        self.admin_port = 0

    # The monitoring objects, in inline mode; in process mode they live in the monitoring process.

    def _inline(self) -> Components:
        if self.components is None:
            raise AttributeError(
                "the monitoring components run in the monitoring process (SIDECAR_MONITORING_PLANE=process);"
                " read them through the admin API, or run with SIDECAR_MONITORING_PLANE=inline"
            )
        return self.components

    @property
    def alerting(self) -> Alerting:
        self._inline()
        assert self._alerting is not None
        return self._alerting

    @property
    def sinks(self) -> list[Sink]:
        return self._inline().sinks

    @property
    def worker(self) -> CaptureWorker:
        return self._inline().worker

    @property
    def monitors(self) -> DataMonitors:
        return self._inline().monitors

    @property
    def store(self) -> PredictionStore:
        return self._inline().store

    @property
    def labels(self) -> LabelIngest:
        return self._inline().labels

    @property
    def performance(self) -> PerformanceEvaluator:
        return self._inline().performance

    @property
    def retrainer(self) -> Retrainer:
        return self._inline().retrainer

    async def start(self) -> None:
        """Bind both ports, open the upstream pool and start serving."""
        s = self.settings
        proxy_sock = _bind(s.listen_host, s.listen_port, "SIDECAR_LISTEN_HOST/SIDECAR_LISTEN_PORT")
        try:
            admin_sock = _bind(s.admin_host, s.admin_port, "SIDECAR_ADMIN_HOST/SIDECAR_ADMIN_PORT")
        except SidecarError:
            proxy_sock.close()
            raise
        _check_file_limit(s)
        self.proxy_port = proxy_sock.getsockname()[1]
        self.admin_port = admin_sock.getsockname()[1]
        await self.client.open()
        try:
            if self.monitor is not None:
                # The monitoring process starts its sinks and store, and reports why it cannot.
                await self.monitor.start()
            else:
                # A sink that cannot start (an unwritable log file) stops start-up
                # with its reason, rather than losing every record later.
                for sink in self.sinks:
                    await sink.start()
                # An unusable state directory stops start-up, naming SIDECAR_STATE_DIR:
                # labels posted to a store that cannot keep them would be lost.
                await self.store.start()
            for client in self._outgoing:
                await client.open()
            if self._shadow is not None:
                await self._shadow.start()
        except SidecarError:
            proxy_sock.close()
            admin_sock.close()
            await self._close_monitoring(asyncio.get_running_loop().time())
            await self.client.close()
            raise
        if self.components is not None:
            self._background = [
                asyncio.create_task(self.worker.run(), name="capture-worker"),
                asyncio.create_task(self.monitors.run(self.settings.eval_interval_seconds), name="evaluator"),
                asyncio.create_task(self.performance.run(self.settings.eval_interval_seconds), name="performance"),
                asyncio.create_task(self.alerting.runner.run(self.settings.eval_interval_seconds), name="alerts"),
                asyncio.create_task(self.alerting.notifier.run(), name="alert-notifier"),
            ]
            if self._history is not None:
                interval = self.settings.eval_interval_seconds
                self._background.append(asyncio.create_task(self._history.run(interval), name="history"))
            if self._experiments is not None:
                interval = self.settings.experiment_interval_seconds
                self._background.append(asyncio.create_task(self._experiments.run(interval), name="experiments"))
            if self._comparison is not None:
                interval = self.settings.experiment_interval_seconds
                self._background.append(asyncio.create_task(self._comparison.run(interval), name="shadow-comparison"))
        # What was built at start-up lives as long as the process: the cyclic collector need not
        # walk it on every full collection (measured: a full collection of the monitoring heap
        # stalled the loop for 44 ms). Objects made later are collected as before.
        gc.freeze()
        if self._saturation is not None:
            self._sampling = asyncio.create_task(self._saturation.run(), name="saturation")
        self._tasks = [
            asyncio.create_task(self._proxy.serve(sockets=[proxy_sock]), name="proxy-server"),
            asyncio.create_task(self._admin.serve(sockets=[admin_sock]), name="admin-server"),
        ]
        while not (self._proxy.started and self._admin.started):
            if any(t.done() for t in self._tasks):
                await self._abort()
                raise SidecarError("a server failed to start; see the log above")
            await asyncio.sleep(0.005)
        logger.info(
            "ml-sidecar proxying http://%s:%d -> %s; admin on http://%s:%d",
            s.listen_host, self.proxy_port, s.upstream_url, s.admin_host, self.admin_port,
        )  # fmt: skip

    def request_shutdown(self) -> None:
        """Begin a graceful stop: refuse readiness, stop accepting, drain in-flight requests."""
        if not self._proxy.should_exit:
            logger.info(
                "shutting down: draining in-flight requests (up to %gs)", self.settings.shutdown_timeout_seconds
            )
        self.readiness.shutting_down = True
        self._proxy.should_exit = True

    async def wait_stopped(self) -> None:
        """Wait for the proxy to drain, then stop the admin app and close the pool."""
        proxy_task, admin_task = self._tasks
        await asyncio.wait([proxy_task, admin_task], return_when=asyncio.FIRST_COMPLETED)
        # The admin port outlives the drain, so /metrics and /readyz (503,
        # "shutting down") stay answerable until the proxy is done.
        self._proxy.should_exit = True
        await proxy_task
        await self._stop_sampling()
        if self._shadow is not None:
            # The drained requests' mirrors, within the flush budget; what misses it is counted dropped_shutdown.
            await self._shadow.close(deadline=asyncio.get_running_loop().time() + self.settings.flush_timeout_seconds)
        # Then the captures of the drained requests: the queue, then the sinks,
        # within their own budget; whatever misses it is counted as dropped.
        await self._close_monitoring(asyncio.get_running_loop().time() + self.settings.flush_timeout_seconds)
        self._admin.should_exit = True
        await admin_task
        await self.client.close()

    async def _close_monitoring(self, deadline: float) -> None:
        if self.monitor is not None:
            await self.monitor.stop(deadline)
            for client in self._outgoing:
                await client.close()
            return
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.monitors.close()
        await self.worker.drain(deadline)
        # After the drain, so the last captured predictions are written before the file closes.
        await self.store.close(deadline)
        await self.retrainer.close(deadline)
        await self.alerting.notifier.close(deadline)
        # Also the clients a failed start-up never opened: each closes only what it opened.
        for client in self._outgoing:
            await client.close()

    async def _stop_sampling(self) -> None:
        if self._sampling is not None:
            self._sampling.cancel()
            await asyncio.gather(self._sampling, return_exceptions=True)
            self._sampling = None

    async def _abort(self) -> None:
        self._proxy.should_exit = self._admin.should_exit = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stop_sampling()
        if self._shadow is not None:
            await self._shadow.close(deadline=asyncio.get_running_loop().time())
        await self._close_monitoring(asyncio.get_running_loop().time())
        await self.client.close()

    async def __aenter__(self) -> Sidecar:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.request_shutdown()
        await self.wait_stopped()
