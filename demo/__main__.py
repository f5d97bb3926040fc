"""``python -m demo`` (``make demo``): a model server, ml-sidecar in front of it, and traffic through it.

All three run in one process and one event loop, on 127.0.0.1 only. Settings:

- ``DEMO_SECONDS``: stop after this many seconds; 0 (the default) runs until Ctrl-C.
- ``DEMO_PROXY_PORT`` (8000) and ``DEMO_ADMIN_PORT`` (9100): the sidecar's ports;
  a port already in use is replaced by a free one, and the banner says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import TypeVar

import orjson

from demo.model_server import MODEL_NAME, READY_PATH, create_app, serve, train_model
from demo.traffic import PREDICT_PATH, LabelFeedback, TrafficGenerator
from sidecar.config import Settings
from sidecar.exceptions import SidecarError
from sidecar.server import Sidecar
from sidecar.upstream.client import UpstreamClient

T = TypeVar("T")

HOST = "127.0.0.1"
RATE = 30.0  # requests a second
CONCURRENCY = 8
# Fast enough that a few minutes of demo shows drift against the training data, slow enough to look gradual.
DRIFT_SD_PER_MINUTE = 0.2
SUMMARY_SECONDS = 5.0
EXAMPLE = {"instances": [{"income": 48.5, "debt_ratio": 0.31, "age": 40, "credit_lines": 4, "late_payments": 0}]}


def _seconds(raw: str) -> float:
    seconds = float(raw)
    if not 0 <= seconds < math.inf:
        raise ValueError(raw)
    return seconds


def _port(raw: str) -> int:
    port = int(raw)
    if not 0 <= port <= 65535:
        raise ValueError(raw)
    return port


def _env(name: str, default: str, parse: Callable[[str], T], allowed: str) -> T:
    raw = os.environ.get(name) or default
    try:
        return parse(raw)
    except ValueError:
        raise SystemExit(f"demo: {name}={raw!r} is not valid: expected {allowed}") from None


def _free_or_any(port: int) -> int:
    """``port`` if nothing listens on it, else 0 so that the OS picks a free one."""
    with socket.socket() as sock:
        # Bound as the sidecar binds, so a port left in TIME_WAIT by a previous run counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            print(f"demo: port {port} is in use; the sidecar takes a free one instead", flush=True)
            return 0
    return port


def _banner(model_url: str, proxy_url: str, admin_url: str, seconds: float) -> str:
    example = orjson.dumps(EXAMPLE).decode()
    until = f"Stopping after {seconds:g}s." if seconds > 0 else "Press Ctrl-C to stop."
    return f"""\
ml-sidecar demo: a {MODEL_NAME} model (logistic regression, KServe V1) behind ml-sidecar, with live traffic
  model server  {model_url}  (direct, not monitored)
  proxy         {proxy_url}  (send predictions here)
  metrics       {admin_url}/metrics
  liveness      {admin_url}/healthz
  readiness     {admin_url}/readyz
  performance   {admin_url}/api/v1/performance  (labels arrive 5-20 s after each prediction)
  drift         {admin_url}/api/v1/drift

Try:
  curl -s {proxy_url}{PREDICT_PATH} -H 'content-type: application/json' \\
    -d '{example}'
  curl -s {admin_url}/metrics | grep '^mlsidecar_requests_total'

Traffic: {RATE:g} requests/s of 1-4 rows, income drifting down {DRIFT_SD_PER_MINUTE:g} sd a minute. {until}
"""


async def _report(traffic: TrafficGenerator, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SUMMARY_SECONDS)
        if not stop.is_set():
            print(traffic.stats.summary(traffic.elapsed, traffic.drift), flush=True)


async def run_demo(seconds: float, proxy_port: int, admin_port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if seconds > 0:
        loop.call_later(seconds, stop.set)

    settings = {
        "SIDECAR_LISTEN_HOST": HOST,
        "SIDECAR_LISTEN_PORT": str(_free_or_any(proxy_port)),
        "SIDECAR_ADMIN_HOST": HOST,
        "SIDECAR_ADMIN_PORT": str(_free_or_any(admin_port)),
        "SIDECAR_MODEL_NAME": MODEL_NAME,
        "SIDECAR_UPSTREAM_HEALTH_PATH": READY_PATH,
        # Nothing is in flight once the traffic has stopped, so a demo never needs the 30 s default.
        "SIDECAR_SHUTDOWN_TIMEOUT_SECONDS": "5",
        # The traffic posts delayed labels: P(default) is the positive class, judged from 50 labels on.
        "SIDECAR_ADMIN_TOKEN": secrets.token_urlsafe(16),
        "SIDECAR_POSITIVE_LABEL": "1",
        "SIDECAR_PERF_MIN_LABELS": "50",
        "SIDECAR_EVAL_INTERVAL_SECONDS": "5",
    }
    # The prediction store of a demo is thrown away with it.
    with tempfile.TemporaryDirectory(prefix="ml-sidecar-demo-") as state_dir:
        settings["SIDECAR_STATE_DIR"] = state_dir
        await _run(settings, seconds, stop)


async def _run(settings: dict[str, str], seconds: float, stop: asyncio.Event) -> None:
    async with serve(create_app(train_model(seed=0)), HOST) as model_url:
        async with Sidecar(Settings.from_env({"SIDECAR_UPSTREAM_URL": model_url, **settings})) as sidecar:
            proxy_url = f"http://{HOST}:{sidecar.proxy_port}"
            print(_banner(model_url, proxy_url, f"http://{HOST}:{sidecar.admin_port}", seconds), flush=True)
            client = UpstreamClient(proxy_url, timeout=10.0, connect_timeout=2.0, max_connections=CONCURRENCY)
            admin = UpstreamClient(
                f"http://{HOST}:{sidecar.admin_port}", timeout=10.0, connect_timeout=2.0, max_connections=1
            )
            await client.open()
            await admin.open()
            traffic = TrafficGenerator(
                client, rate=RATE, concurrency=CONCURRENCY, drift_sd_per_minute=DRIFT_SD_PER_MINUTE
            )
            feedback = LabelFeedback(admin, settings["SIDECAR_ADMIN_TOKEN"], traffic.stats)
            traffic.feedback = feedback
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(traffic.run(stop))
                    tasks.create_task(feedback.run(stop))
                    tasks.create_task(_report(traffic, stop))
            finally:
                await client.close()
                await admin.close()
            print("stopping; " + traffic.stats.summary(traffic.elapsed, traffic.drift), flush=True)


def main() -> int:
    seconds = _env("DEMO_SECONDS", "0", _seconds, "a number of seconds, 0 for until Ctrl-C")
    proxy_port = _env("DEMO_PROXY_PORT", "8000", _port, "a port from 0 to 65535")
    admin_port = _env("DEMO_ADMIN_PORT", "9100", _port, "a port from 0 to 65535")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    # Three uvicorn servers would each announce themselves; the banner says it once.
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    try:
        asyncio.run(run_demo(seconds, proxy_port, admin_port))
    except SidecarError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0


raise SystemExit(main())
