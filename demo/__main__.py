"""``python -m demo`` (``make demo``): two versions of a model, ml-sidecar in front of them, and traffic that drifts.

All of it runs in one process and one event loop, on 127.0.0.1. The
story (:mod:`demo.scenario`): 30 s of calm traffic like the training data,
then a shift that the sidecar reports as drift, a data-quality violation and
firing alerts within about a minute. Meanwhile an A/B experiment
(:mod:`demo.experiment`) splits the users between v1 of the model and v2,
and the sidecar decides to roll v2 out, from the conversions the users post,
well within the two minutes. A summary line every 5 s says so; the
prediction log goes to a file in the demo's temporary directory, never to
the terminal. Settings:

- ``DEMO_SECONDS``: stop after this many seconds; 0 (the default) runs until Ctrl-C.
- ``DEMO_PROXY_PORT`` (8000) and ``DEMO_ADMIN_PORT`` (9100): the sidecar's ports;
  a port already in use is replaced by a free one, and the banner says which.
- ``DEMO_SPEED`` (1): divides every length of the story (the calm phase, the
  drift window, the evaluation interval, the alert rules' ``for``) by this
  factor, from 0.1 to 10; the tests run at 5.
- ``SIDECAR_*``: the sidecar's own settings (README, Configuration) win over
  the demo's choices (:mod:`demo.environment`), except ``SIDECAR_UPSTREAM_URL``.
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import orjson

from demo.environment import Timings, alert_rules, sidecar_environment
from demo.experiment import USER_HEADER, USERS, Conversions, experiment_definition
from demo.model_server import MODEL_NAME, READY_PATH, create_app, serve
from demo.scenario import Scenario
from demo.summary import StatusReader, summary_line
from demo.traffic import PREDICT_PATH, LabelFeedback, TrafficGenerator
from demo.training import train
from sidecar.config import Settings
from sidecar.exceptions import ProblemsError, SidecarError
from sidecar.server import Sidecar
from sidecar.upstream.client import UpstreamClient

T = TypeVar("T")

HOST = "127.0.0.1"
RATE = 30.0  # requests a second
CONCURRENCY = 8
PREDICTION_LOG = "predictions.jsonl"
EXAMPLE = {
    "income": 48.5,
    "debt_ratio": 0.31,
    "age": 40,
    "credit_lines": 4,
    "late_payments": 0,
    "employment": "salaried",
}


def _seconds(raw: str) -> float:
    seconds = float(raw)
    if not 0 <= seconds < math.inf:
        raise ValueError(raw)
    return seconds


def _speed(raw: str) -> float:
    speed = float(raw)
    if not 0.1 <= speed <= 10:
        raise ValueError(raw)
    return speed


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


def _free_or_any(port: int, notes: list[str]) -> int:
    """``port`` if nothing listens on it, else 0 so that the OS picks a free one (and a note says so)."""
    with socket.socket() as sock:
        # Bound as the sidecar binds, so a port left in TIME_WAIT by a previous run counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            notes.append(f"port {port} is in use; the sidecar takes a free one instead")
            return 0
    return port


def _url(host: str, port: int) -> str:
    """Where this process reaches a listener on ``host``: the loopback for a wildcard address."""
    host = {"0.0.0.0": HOST, "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _banner(
    model_urls: tuple[str, str],
    proxy_url: str,
    admin_url: str,
    settings: Settings,
    scenario: Scenario,
    notes: list[str],
) -> str:
    example = orjson.dumps({"instances": [EXAMPLE]}).decode()
    log = " ".join(settings.log_sink)
    if settings.state_dir in log:
        log += "  (removed when the demo stops; set SIDECAR_LOG_SINK to keep it)"
    window = f"{settings.drift_window_seconds:g} s drift window evaluated every {settings.eval_interval_seconds:g} s"
    # The status page comes first: it is the one address to open.
    head = f"ml-sidecar demo: status page {admin_url}/\n" + "".join(f"demo: {note}\n" for note in notes)
    return f"""\
{head}
A {MODEL_NAME} model (logistic regression, KServe V1) behind ml-sidecar, with live traffic:
  model v1        {model_urls[0]}  (direct, not monitored)
  model v2        {model_urls[1]}  (direct; the same model with squared terms)
  proxy           {proxy_url}  (send predictions here)
  drift           {admin_url}/api/v1/drift
  data quality    {admin_url}/api/v1/quality
  alerts          {admin_url}/api/v1/alerts  (rules: {settings.alert_rules or "built-in"})
  performance     {admin_url}/api/v1/performance  (labels arrive 5-20 s after each prediction)
  experiment      {admin_url}/api/v1/experiments  (definition: {settings.experiment_path or "none"})
  metrics         {admin_url}/metrics
  prediction log  {log}

Try:
  curl -s {proxy_url}{PREDICT_PATH} -H 'content-type: application/json' -H '{USER_HEADER}: u-17' \\
    -d '{example}'
  curl -s {admin_url}/metrics | grep '^mlsidecar_feature_drift_score'

Traffic: {RATE:g} requests/s of 1-4 applicants from {USERS} users ({USER_HEADER}). {scenario.describe()}
Expect drift, a data-quality violation and firing alerts within about a minute ({window}).
Half the users are served by v2; those who take their offer post a conversion 2-5 s later.
Expect the experiment to roll out v2 within about half a minute (analysed every \
{settings.experiment_interval_seconds:g} s).
"""


async def _report(traffic: TrafficGenerator, reader: StatusReader, every: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if not stop.is_set():
            status = await reader.read()
            print(summary_line(traffic.elapsed, traffic.phase, traffic.stats, status), flush=True)


def _defaults(directory: Path, reference: Path, experiment: Path, speed: float) -> dict[str, str]:
    """The demo's choice of every setting it needs other than the ports; the user's ``SIDECAR_*`` win over these."""
    return {
        "SIDECAR_LISTEN_HOST": HOST,
        "SIDECAR_ADMIN_HOST": HOST,
        "SIDECAR_MODEL_NAME": MODEL_NAME,
        "SIDECAR_UPSTREAM_HEALTH_PATH": READY_PATH,
        # Nothing is in flight once the traffic has stopped, so a demo never needs the 30 s default.
        "SIDECAR_SHUTDOWN_TIMEOUT_SECONDS": "5",
        # The traffic posts delayed labels: P(default) is the positive class, judged from 50 labels on.
        "SIDECAR_ADMIN_TOKEN": secrets.token_urlsafe(16),
        "SIDECAR_POSITIVE_LABEL": "1",
        "SIDECAR_PERF_MIN_LABELS": "50",
        "SIDECAR_STATE_DIR": str(directory),
        "SIDECAR_REFERENCE_PATH": str(reference),
        "SIDECAR_ALERT_RULES": str(alert_rules(speed, directory)),
        "SIDECAR_EXPERIMENT_PATH": str(experiment),
        # One JSON line per row would bury the summary lines.
        "SIDECAR_LOG_SINK": f"file:{directory / PREDICTION_LOG}",
        # The banner and the summary lines say what the sidecar's info lines would.
        "SIDECAR_LOG_LEVEL": "warning",
        **Timings(speed).environment(),
    }


async def run_demo(seconds: float, speed: float, proxy_port: int, admin_port: int, user: Mapping[str, str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if seconds > 0:
        loop.call_later(seconds, stop.set)
    notes: list[str] = []
    # The prediction store, the log and the reference of a demo are thrown away with it.
    with tempfile.TemporaryDirectory(prefix="ml-sidecar-demo-") as name:
        directory = Path(name)
        trained = train(directory)
        async with (
            serve(create_app(trained.model, version="1"), HOST) as model_url,
            serve(create_app(trained.challenger, version="2"), HOST) as challenger_url,
        ):
            experiment = experiment_definition(directory, challenger_url)
            defaults = _defaults(directory, trained.reference, experiment, speed)
            # Probed only when they are the demo's to choose, so a port the user set is never second-guessed.
            for variable, port in (("SIDECAR_LISTEN_PORT", proxy_port), ("SIDECAR_ADMIN_PORT", admin_port)):
                if not user.get(variable, "").strip():
                    defaults[variable] = str(_free_or_any(port, notes))
            environment, overrides = sidecar_environment(defaults, user, model_url)
            notes += overrides
            notes += [
                f"warning: {name} is not a known setting and is ignored"
                for name in Settings.unknown_variables(environment)
            ]
            settings = Settings.from_env(environment)
            logging.getLogger().setLevel(settings.log_level.upper())
            model_urls = (model_url, challenger_url)
            await _run(settings, model_urls, Scenario.at_speed(speed), Timings(speed), notes, stop)


async def _run(
    settings: Settings,
    model_urls: tuple[str, str],
    scenario: Scenario,
    timings: Timings,
    notes: list[str],
    stop: asyncio.Event,
) -> None:
    async with Sidecar(settings) as sidecar:
        proxy_url = _url(settings.listen_host, sidecar.proxy_port)
        admin_url = _url(settings.admin_host, sidecar.admin_port)
        print(_banner(model_urls, proxy_url, admin_url, settings, scenario, notes), flush=True)
        client = UpstreamClient(proxy_url, timeout=10.0, connect_timeout=2.0, max_connections=CONCURRENCY)
        # One connection each for the label poster, the conversion poster and the summary's reader.
        admin = UpstreamClient(admin_url, timeout=10.0, connect_timeout=2.0, max_connections=3)
        await client.open()
        await admin.open()
        token = settings.admin_token or ""
        conversions = Conversions(admin, token)
        traffic = TrafficGenerator(client, scenario, rate=RATE, concurrency=CONCURRENCY, conversions=conversions)
        feedback = LabelFeedback(admin, token, traffic.stats)
        traffic.feedback = feedback
        reader = StatusReader(admin)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(traffic.run(stop))
                tasks.create_task(feedback.run(stop))
                tasks.create_task(conversions.run(stop))
                tasks.create_task(_report(traffic, reader, timings.summary, stop))
            status = await reader.read()
        finally:
            await client.close()
            await admin.close()
        print("stopping: " + summary_line(traffic.elapsed, traffic.phase, traffic.stats, status).lstrip(), flush=True)


def main() -> int:
    seconds = _env("DEMO_SECONDS", "0", _seconds, "a number of seconds, 0 for until Ctrl-C")
    speed = _env("DEMO_SPEED", "1", _speed, "a factor from 0.1 to 10")
    proxy_port = _env("DEMO_PROXY_PORT", "8000", _port, "a port from 0 to 65535")
    admin_port = _env("DEMO_ADMIN_PORT", "9100", _port, "a port from 0 to 65535")
    # At the sidecar's SIDECAR_LOG_LEVEL once its settings are read (the demo's default: warning).
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    # Four uvicorn servers would each announce themselves; the banner says it once.
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    try:
        asyncio.run(run_demo(seconds, speed, proxy_port, admin_port, os.environ))
    except ProblemsError as exc:
        print("demo: the sidecar's settings cannot be used:", *exc.problems, sep="\n  ", file=sys.stderr)
        return 2
    except SidecarError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0


raise SystemExit(main())
