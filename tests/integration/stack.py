"""Real Prometheus and Alertmanager for tests: the Debian binaries, on 127.0.0.1, in temporary directories.

Each server runs as a child process on a free port, with its configuration, storage and log
in a directory the caller gives (a ``tmp_path``). The async context managers wait until the
server answers ``/-/ready`` and, on the way out, whatever happened inside, stop it: SIGTERM,
then SIGKILL after a grace period. On Linux the children also get SIGKILL if the test
process itself dies, so no server outlives a killed pytest.

The helpers are async because the servers talk to code in the test's own event loop: a
Prometheus that scrapes a sidecar started with :func:`tests.servers.run_sidecar` needs that
loop free while the test waits.

Usage::

    async with (
        run_webhook_receiver() as webhook,
        run_alertmanager(tmp_path / "am", hermetic_alertmanager_config(ALERTMANAGER_CONFIG, webhook.url)) as am,
        run_prometheus(
            tmp_path / "prom",
            targets=[f"127.0.0.1:{sidecar.admin_port}"],
            rule_files=[shortened_rules(RECORDING_RULES, tmp_path / "recording.yml")],
            alertmanager=am,
        ) as prometheus,
    ):
        await prometheus.query("up")
        firing = await eventually(lambda: am.alerts(alertname="feature_drift"), timeout=60, what="feature_drift")
"""

from __future__ import annotations

import asyncio
import ctypes
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson
import yaml

from tests.http import raw_request
from tests.servers import read_body, run_server
from tests.tools import binary

__all__ = [
    "ALERTING_RULES",
    "ALERTMANAGER",
    "ALERTMANAGER_CONFIG",
    "PROMETHEUS",
    "RECORDING_RULES",
    "Alertmanager",
    "Process",
    "Prometheus",
    "WebhookReceiver",
    "eventually",
    "hermetic_alertmanager_config",
    "run_alertmanager",
    "run_prometheus",
    "run_webhook_receiver",
    "shortened_rules",
]

# Debian's names: the prometheus package, and prometheus-alertmanager (upstream calls it alertmanager).
PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RECORDING_RULES = DEPLOY / "prometheus" / "recording_rules.yml"
ALERTING_RULES = DEPLOY / "prometheus" / "alerting_rules.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"

T = TypeVar("T")
Scope = dict[str, Any]

_START_ATTEMPTS = 3  # a free port can be taken between probing it and the server binding it
_READY_TIMEOUT = 30.0
_STOP_GRACE = 5.0
_PR_SET_PDEATHSIG = 1


# --- polling -----------------------------------------------------------------------------------


async def eventually(probe: Callable[[], Awaitable[T]], *, timeout: float, what: str, interval: float = 0.25) -> T:
    """Call ``probe`` until it returns something truthy, and return that; fail at the deadline.

    The assertion is the returned value, never a sleep: the wait ends as soon as the
    condition holds, and the deadline only bounds a failure.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {what} (last: {value!r})")
        await asyncio.sleep(interval)


# --- processes ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Looked up once, in the parent: the child, between fork and exec, should only make the call.
_prctl = ctypes.CDLL(None).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # SIGKILL when the test process dies, even by SIGKILL, so no server outlives a killed pytest.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class Process:
    """A server child process and its log file (stdout and stderr together)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; always reaps the child."""
        popen = self.popen
        if popen.poll() is None:
            popen.terminate()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + _STOP_GRACE
            while popen.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.02)
            if popen.poll() is None:
                popen.kill()
        popen.wait()


async def _start(name: str, directory: Path, argv_for: Callable[[int], list[str]]) -> tuple[Process, int]:
    """Start a server on a free port and wait until ``/-/ready`` answers 200."""
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / f"{name}.log"
    for _ in range(_START_ATTEMPTS):
        port = _free_port()
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv_for(port),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=directory,
                preexec_fn=_die_with_parent if _prctl is not None else None,
            )
        process = Process(name, popen, log)
        try:
            if await _wait_ready(process, port):
                return process, port
        except BaseException:
            await process.stop()
            raise
        await process.stop()  # it exited before it was ready: most likely the port was taken
    raise AssertionError(f"{name} exited {_START_ATTEMPTS} times before it was ready; its log:\n{log.read_text()}")


async def _wait_ready(process: Process, port: int) -> bool:
    """True once the server is ready; False if it exited first; an error at the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _READY_TIMEOUT
    while process.popen.poll() is None:
        try:
            response = await raw_request(port, "GET", "/-/ready")
            if response.status == 200:
                return True
        except OSError:
            pass  # not listening yet
        if loop.time() >= deadline:
            raise AssertionError(f"{process.name} not ready in {_READY_TIMEOUT:g} s; its log:\n{process.log_tail()}")
        await asyncio.sleep(0.05)
    return False


async def _get_json(port: int, target: str) -> Any:
    response = await raw_request(port, "GET", target)
    assert response.status == 200, (target, response.status, response.body[:500])
    return orjson.loads(response.body)


# --- Alertmanager ------------------------------------------------------------------------------


@dataclass
class Alertmanager:
    """A running Alertmanager; ``url`` is what Prometheus or a sidecar's notifier posts to."""

    port: int
    process: Process

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    async def alerts(
        self, *, active: bool = True, silenced: bool = False, inhibited: bool = False, **labels: str
    ) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``, filtered by exact label values (``alertname="feature_drift"``).

        By default only the alerts that notify: active, neither silenced nor inhibited. Each has
        ``labels``, ``annotations``, ``status.state`` and ``receivers`` (the route's choice).
        """
        query: list[tuple[str, str]] = [
            ("active", str(active).lower()),
            ("silenced", str(silenced).lower()),
            ("inhibited", str(inhibited).lower()),
        ]
        query += [("filter", f"{name}={orjson.dumps(value).decode()}") for name, value in labels.items()]
        alerts: list[dict[str, Any]] = await _get_json(self.port, "/api/v2/alerts?" + urlencode(query))
        return alerts


@asynccontextmanager
async def run_alertmanager(directory: Path, config: Mapping[str, Any]) -> AsyncIterator[Alertmanager]:
    """Alertmanager with ``config`` on 127.0.0.1, clustering off, storage under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    exe = binary(ALERTMANAGER)
    process, port = await _start(
        "alertmanager",
        directory,
        lambda port: [
            exe,
            f"--config.file={config_file}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # empty: no gossip port, no peers
            "--log.level=info",
        ],
    )
    try:
        yield Alertmanager(port, process)
    finally:
        await process.stop()


def hermetic_alertmanager_config(
    source: Path, webhook_url: str, *, group_wait: str = "1s", group_interval: str = "1s"
) -> dict[str, Any]:
    """``source``'s routes and inhibition, with every receiver made a webhook to ``webhook_url/<name>``.

    The documented transformation for tests: the receivers keep their names, so
    ``/api/v2/alerts`` and the webhook's path show which receiver the route chose, but
    nothing leaves 127.0.0.1 (no PagerDuty, no Slack). ``group_wait`` and ``group_interval``
    are shortened on every route that sets them, so a notification goes out within seconds.
    """
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    config["receivers"] = [
        {"name": receiver["name"], "webhook_configs": [{"url": f"{webhook_url}/{receiver['name']}"}]}
        for receiver in config["receivers"]
    ]
    shorter = {"group_wait": group_wait, "group_interval": group_interval}
    config["route"].update(shorter)  # the root's values are the defaults the child routes inherit
    routes: list[dict[str, Any]] = list(config["route"].get("routes", []))
    while routes:
        route = routes.pop()
        route.update({key: value for key, value in shorter.items() if key in route})
        routes.extend(route.get("routes", []))
    return config


# --- Prometheus --------------------------------------------------------------------------------


@dataclass
class Prometheus:
    """A running Prometheus; ``query`` and ``rules`` read its HTTP API."""

    port: int
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query: the vector's samples, each ``{"metric": {...}, "value": [t, "v"]}``."""
        body = await _get_json(self.port, "/api/v1/query?" + urlencode({"query": expr}))
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule (``/api/v1/rules``), each with ``name``, ``health`` and ``lastError``."""
        body = await _get_json(self.port, "/api/v1/rules")
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]

    async def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts as Prometheus sees them (``/api/v1/alerts``)."""
        body = await _get_json(self.port, "/api/v1/alerts")
        alerts: list[dict[str, Any]] = body["data"]["alerts"]
        return alerts


@asynccontextmanager
async def run_prometheus(
    directory: Path,
    *,
    targets: Sequence[str],
    rule_files: Sequence[Path] = (),
    alertmanager: Alertmanager | None = None,
    interval: str = "1s",
) -> AsyncIterator[Prometheus]:
    """Prometheus on 127.0.0.1 scraping ``targets``' ``/metrics`` and evaluating ``rule_files``.

    ``interval`` is both the scrape and the evaluation interval (a rule group's own
    ``interval`` wins over it; :func:`shortened_rules` sets that). Alerts go to
    ``alertmanager`` when given. The targets' labels are ``job="mlsidecar"`` and
    ``instance="<target>"``, as a static scrape config gives them.

    The first scrape comes about 5 s after start, whatever the interval: Prometheus hands
    new targets to its scrape manager at most every 5 s.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": "mlsidecar", "metrics_path": "/metrics", "static_configs": [{"targets": list(targets)}]}
        ],
    }
    if alertmanager is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager.address]}]}]}
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    exe = binary(PROMETHEUS)
    process, port = await _start(
        "prometheus",
        directory,
        lambda port: [
            exe,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=info",
        ],
    )
    try:
        yield Prometheus(port, process)
    finally:
        await process.stop()


_RANGE = re.compile(r"\[\d+[smhdwy]\]")


def shortened_rules(
    source: Path, destination: Path, *, window: str = "1m", wait: str = "1s", interval: str = "1s"
) -> Path:
    """Write ``source``'s rules to ``destination`` with test-sized durations; return ``destination``.

    The documented transformation for tests. Production windows (``[1h]`` for the fleet PSI,
    ``[5m]`` to ``[1h]`` in the alerts) and waits (``for:`` up to 30m) would make an end-to-end
    test take hours, so:

    - every range selector ``[<duration>]`` in an ``expr`` becomes ``[window]``;
    - every ``for:`` becomes ``wait``;
    - every group's ``interval`` becomes ``interval``.

    Everything else, the expressions, thresholds, guards, labels, annotations and the
    recorded series' names (``...:fleet1h`` keeps its name), is the deploy file's.
    """
    document: dict[str, Any] = yaml.safe_load(source.read_text())
    for group in document["groups"]:
        group["interval"] = interval
        for rule in group["rules"]:
            rule["expr"] = _RANGE.sub(f"[{window}]", rule["expr"])
            if "for" in rule:
                rule["for"] = wait
    destination.write_text(yaml.safe_dump(document, sort_keys=False))
    return destination


# --- a webhook receiver ------------------------------------------------------------------------


@dataclass
class WebhookReceiver:
    """Records the JSON bodies POSTed to it, by path: what Alertmanager's webhooks deliver."""

    port: int = 0
    received: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def notifications(self, path: str) -> list[Any]:
        """The bodies POSTed to ``/<path>``: for Alertmanager, one per notification to that receiver."""
        return [body for seen, body in self.received if seen == f"/{path}"]

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = await read_body(receive)
        self.received.append((scope["path"], orjson.loads(body) if body else None))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def run_webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    async with run_server(receiver) as port:
        receiver.port = port
        yield receiver
