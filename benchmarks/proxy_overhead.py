"""What does the sidecar cost? Throughput, latency and CPU against nginx, in one run.

The targets sit in front of the same fast upstream, an nginx server block
that answers every POST with a fixed prediction-like JSON body, so the model
costs next to nothing and the proxy's own cost is what shows:

- ``direct``: wrk talks to the upstream itself (the floor);
- ``nginx``: an nginx keep-alive reverse proxy in front of it (the yardstick);
- ``sidecar``: ``python -m sidecar serve`` in front of it;
- ``naive`` (when aiohttp is installed; ``--no-naive`` skips it): the naive
  Python proxy the CPU target is stated against, uvicorn configured as the
  sidecar configures it serving a raw ASGI app that forwards each request
  through one shared aiohttp ``ClientSession`` (``benchmarks.asgi_floor``'s
  ``asgi+aiohttp``).

Each is driven by wrk at 1 connection (latency) and 32 connections
(throughput). CPU per request comes from the process under test's
utime + stime in ``/proc/PID/stat``, divided by the requests wrk completed.

Every target is a ratio to a baseline measured in the same run (nginx, the
naive proxy), so that it holds on any machine (docs/architecture.md,
"Performance targets"). Where no target is set yet, the ratios are printed
without a verdict.

Usage::

    python -m benchmarks.proxy_overhead --duration 10 --json results.json

Everything runs on 127.0.0.1 on free ports and every process started here is
stopped before exit.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["RunResult", "Summary", "main", "parse_wrk", "sidecar_environment", "sidecar_settings", "summarize"]

HOST = "127.0.0.1"
# (threads, connections): one connection shows the latency a request pays;
# 32 keep both cores busy and show the throughput ceiling.
LOADS: tuple[tuple[int, int], ...] = ((1, 1), (2, 32))
THROUGHPUT_CONNECTIONS = 32
LATENCY_CONNECTIONS = 1
NAIVE = "naive"

# The sidecar's targets, each a ratio to a baseline measured in the same run.
MIN_THROUGHPUT_RATIO = 0.30  # sidecar req/s over nginx's, at 32 connections
# Sidecar CPU per request over the naive proxy's, at 32 connections; it replaces
# the retired absolute 80 µs, which was set on another machine.
MAX_CPU_RATIO_TO_NAIVE = 0.5
# Printed instead of a verdict where no ratio target is set yet (latency, CPU over nginx's).
NO_TARGET = "no target yet"

# A small request and answer, shaped like a KServe v1 prediction.
REQUEST_BODY = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]})
RESPONSE_BODY = json.dumps({"predictions": [{"label": "setosa", "scores": [0.97, 0.02, 0.01]}], "model_version": "1"})

# The sidecar's settings for "capture off": the proxy alone, what the targets are set for.
PROXY_ONLY: Mapping[str, str] = {"SIDECAR_SAMPLE_RATE": "0", "SIDECAR_LOG_SINK": "none"}

# Above this much CPU used by other processes (in cores), a run is flagged as noisy.
OTHER_CPU_WARNING = 0.2

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_STARTUP_SECONDS = 15.0
_STOP_SECONDS = 5.0


@dataclass(frozen=True)
class RunResult:
    """One wrk run against one target."""

    target: str
    connections: int
    requests: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    errors: int  # socket errors plus non-2xx/3xx answers; nonzero makes the run suspect
    other_cpu_cores: float  # CPU used by processes this benchmark did not start, in cores


@dataclass(frozen=True)
class Summary:
    """The sidecar's ratios to the baselines of the same run, the figures behind them, and the verdicts.

    ``targets_met`` holds a verdict only for the ratios that have a target:
    ``throughput`` always, ``cpu_vs_naive`` when the naive proxy was measured.
    """

    throughput_ratio: float  # sidecar req/s / nginx's, at 32 connections
    cpu_ratio_to_nginx: float  # sidecar CPU per request / nginx's, at 32 connections
    # Latency at 1 connection: the sidecar's p50 and p99 over direct's and over nginx's.
    p50_ratio_to_direct: float
    p99_ratio_to_direct: float
    p50_ratio_to_nginx: float
    p99_ratio_to_nginx: float
    added_p50_ms: float
    added_p99_ms: float
    nginx_added_p50_ms: float
    nginx_added_p99_ms: float
    sidecar_cpu_us_per_request: float
    nginx_cpu_us_per_request: float
    targets_met: dict[str, bool]
    # Against the naive aiohttp proxy at 32 connections; None when it was not measured.
    naive_cpu_us_per_request: float | None = None
    cpu_ratio_to_naive: float | None = None  # sidecar CPU per request / naive's
    throughput_ratio_to_naive: float | None = None  # sidecar req/s / naive's


# --- wrk ----------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}  # to milliseconds
_PERCENTILE = r"^\s*{}%\s+([\d.]+)(us|ms|s|m|h)\s*$"


def _search(pattern: str, text: str) -> re.Match[str]:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"unexpected wrk output (no match for {pattern!r}):\n{text}")
    return match


def parse_wrk(output: str) -> tuple[int, float, float, float, int]:
    """Requests, req/s, p50 ms, p99 ms and error count from ``wrk --latency`` output."""
    requests = int(_search(r"^\s*(\d+) requests in ", output).group(1))
    rps = float(_search(r"^Requests/sec:\s+([\d.]+)", output).group(1))
    p50, p99 = (
        float(m.group(1)) * _UNITS[m.group(2)] for m in (_search(_PERCENTILE.format(p), output) for p in ("50", "99"))
    )
    errors = 0
    # wrk prints these lines only when something went wrong.
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors += sum(int(g) for g in m.groups())
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(m.group(1))
    return requests, rps, p50, p99, errors


def _wrk(url: str, script: Path, threads: int, connections: int, seconds: float) -> str:
    # wrk takes whole seconds; --timeout is above any latency a healthy run sees.
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s"]
    cmd += ["--latency", "-s", str(script), url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


def _write_wrk_script(directory: Path) -> Path:
    # Only static fields are set, so wrk builds the request once and replays
    # it; a Lua request() function would cost wrk CPU on every request.
    script = directory / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = [==[{REQUEST_BODY}]==]\nwrk.headers["Content-Type"] = "application/json"\n'
    )
    return script


# --- processes ------------------------------------------------------------------------------------


def _free_port() -> int:
    # The port is released again before the server binds it; on a quiet
    # loopback interface nothing else takes it in between.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name is in parentheses and may contain spaces, so split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _tree_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its live descendants.

    The sidecar is a process tree in its default mode: the proxy, the fork
    server and the monitoring process; every one of them is its cost.
    """
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            total += _cpu_seconds(current)
            pending += _children(current)
    return total


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                    out.append(int(entry.name))
    return out


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{process.args!r} did not listen on {HOST}:{port} within {_STARTUP_SECONDS:g}s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"


def _stop(process: subprocess.Popen[bytes], extra_pids: Sequence[int] = ()) -> None:
    # SIGTERM is a fast shutdown for nginx and a graceful one for the sidecar;
    # anything still alive after the grace period is killed, workers included,
    # since an nginx worker outlives a SIGKILLed master.
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pid in extra_pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


_NGINX_CONF = """\
worker_processes 1;
{user}
pid {tmp}/nginx-{name}.pid;
error_log {tmp}/nginx-{name}.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/{name}-body;
    proxy_temp_path {tmp}/{name}-proxy;
    fastcgi_temp_path {tmp}/{name}-fastcgi;
    uwsgi_temp_path {tmp}/{name}-uwsgi;
    scgi_temp_path {tmp}/{name}-scgi;
    # wrk keeps its connections for the whole run; nginx's default of 1000
    # requests per connection would add reconnects that no target should pay.
    keepalive_requests 10000000;
    keepalive_timeout 75s;
{body}
}}
"""

_UPSTREAM_SERVER = """\
    server {{
        listen {host}:{port};
        location / {{
            default_type application/json;
            return 200 '{response}';
        }}
    }}"""

_PROXY_SERVER = """\
    upstream model {{
        server {host}:{upstream_port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""


@contextlib.contextmanager
def _nginx(tmp: Path, name: str, server_block: str, port: int) -> Iterator[int]:
    """Run one single-worker nginx; yield its worker's pid, which does all the work."""
    # As root, nginx would hand requests to "nobody", who cannot enter the
    # private temp dir; the worker only ever talks to 127.0.0.1.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = tmp / f"nginx-{name}.conf"
    conf.write_text(_NGINX_CONF.format(user=user, tmp=tmp, name=name, body=server_block))
    log = tmp / f"nginx-{name}.log"
    cmd = ["nginx", "-p", str(tmp), "-c", str(conf), "-e", str(log), "-g", "daemon off;"]
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        _wait_for_port(port, process, log)
        # The master listens before it forks the worker, so give the fork a moment.
        deadline = time.monotonic() + _STARTUP_SECONDS
        while len(workers := _children(process.pid)) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(workers) != 1:
            raise RuntimeError(f"expected one nginx worker under {process.pid}, found {workers}:\n{_tail(log)}")
        yield workers[0]
    finally:
        _stop(process, workers)


def sidecar_environment(
    settings: Mapping[str, str], *, upstream_port: int, port: int, state_dir: Path, shutdown_seconds: float = 2.0
) -> dict[str, str]:
    """The environment of a benchmark's ``python -m sidecar serve``: ``settings`` on 127.0.0.1, nothing else.

    Only the benchmark's own ``SIDECAR_*`` settings apply, whatever the caller's shell has, so two runs
    of the same command measure the same thing. The admin port is ``settings``' or a free one.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env.update(settings)
    env.update(
        SIDECAR_UPSTREAM_URL=f"http://{HOST}:{upstream_port}",
        SIDECAR_LISTEN_HOST=HOST,
        SIDECAR_LISTEN_PORT=str(port),
        SIDECAR_ADMIN_HOST=HOST,
        SIDECAR_ADMIN_PORT=settings.get("SIDECAR_ADMIN_PORT", str(_free_port())),
        SIDECAR_LOG_LEVEL="warning",
        SIDECAR_SHUTDOWN_TIMEOUT_SECONDS=f"{shutdown_seconds:g}",
        SIDECAR_STATE_DIR=str(state_dir),  # the prediction store, thrown away with the run
    )
    return env


@contextlib.contextmanager
def _sidecar(tmp: Path, upstream_port: int, port: int, settings: Mapping[str, str]) -> Iterator[int]:
    """Run ``python -m sidecar serve`` in front of the upstream; yield its pid."""
    env = sidecar_environment(settings, upstream_port=upstream_port, port=port, state_dir=tmp / f"state-{port}")
    with _serve_process([sys.executable, "-m", "sidecar", "serve"], port, tmp / "sidecar.log", env) as pid:
        yield pid


@contextlib.contextmanager
def _naive(tmp: Path, upstream_port: int, port: int) -> Iterator[int]:
    """Run the naive uvicorn + aiohttp forwarder in front of the upstream; yield its pid."""
    # asgi_floor's own app and server set-up, started through its entry point,
    # so both benchmarks measure the very same naive proxy.
    cmd = [sys.executable, "-m", "benchmarks.asgi_floor", "--serve", "asgi+aiohttp", str(port), str(upstream_port)]
    with _serve_process(cmd, port, tmp / "naive.log") as pid:
        yield pid


@contextlib.contextmanager
def _serve_process(cmd: Sequence[str], port: int, log: Path, env: Mapping[str, str] | None = None) -> Iterator[int]:
    """Start a server process, output to ``log``; yield its pid once it listens on ``port``, stop it after."""
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        _wait_for_port(port, process, log)
        yield process.pid
    finally:
        _stop(process)


# --- measuring ------------------------------------------------------------------------------------


def _machine_busy_seconds() -> float:
    """CPU time all processes spent, summed over cores, from the first line of /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[1:8])
    return (user + nice + system + irq + softirq) / _CLK_TCK


def _children_cpu_seconds() -> float:
    # wrk is the only child this process waits for while measuring.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(
    target: str, port: int, pid: int, ours: Sequence[int], script: Path, duration: float, warmup: float
) -> list[RunResult]:
    """wrk at each load against one target; ``ours`` are all the pids this benchmark started."""
    url = f"http://{HOST}:{port}/v1/models/iris:predict"
    if warmup > 0:
        # Fills connection pools, and lets CPython's caches and the allocator settle.
        _wrk(url, script, 2, THROUGHPUT_CONNECTIONS, warmup)
    results = []
    for threads, connections in LOADS:
        before = _tree_cpu_seconds(pid)
        ours_before = sum(map(_tree_cpu_seconds, ours)) + _children_cpu_seconds()
        busy_before, started = _machine_busy_seconds(), time.monotonic()
        output = _wrk(url, script, threads, connections, duration)
        cpu = _tree_cpu_seconds(pid) - before
        # Whatever else ran on the machine competed for the same two cores and
        # skews every number; it is measured so that a noisy run shows.
        ours_cpu = sum(map(_tree_cpu_seconds, ours)) + _children_cpu_seconds() - ours_before
        other = max(0.0, _machine_busy_seconds() - busy_before - ours_cpu) / (time.monotonic() - started)
        requests, rps, p50, p99, errors = parse_wrk(output)
        per_request = cpu / requests * 1e6 if requests else float("nan")
        results.append(RunResult(target, connections, requests, rps, p50, p99, per_request, errors, other))
        print(f"  {target:<8} {connections:>3} connections: {rps:>9.0f} req/s", file=sys.stderr)
    return results


def _find(results: Sequence[RunResult], target: str, connections: int) -> RunResult:
    return next(r for r in results if r.target == target and r.connections == connections)


def summarize(results: Sequence[RunResult]) -> Summary:
    """The sidecar's ratios to the same run's baselines, with a verdict where a target is set."""
    side_hi = _find(results, "sidecar", THROUGHPUT_CONNECTIONS)
    nginx_hi = _find(results, "nginx", THROUGHPUT_CONNECTIONS)
    direct_lo = _find(results, "direct", LATENCY_CONNECTIONS)
    side_lo = _find(results, "sidecar", LATENCY_CONNECTIONS)
    nginx_lo = _find(results, "nginx", LATENCY_CONNECTIONS)
    ratio = side_hi.requests_per_second / nginx_hi.requests_per_second
    # CPU per request is compared under load, where it decides how many cores a
    # replica needs; at 1 connection the idle loop's wake-ups inflate it.
    cpu = side_hi.cpu_us_per_request
    targets_met = {"throughput": ratio >= MIN_THROUGHPUT_RATIO}
    naive_hi = next((r for r in results if r.target == NAIVE and r.connections == THROUGHPUT_CONNECTIONS), None)
    naive_cpu = cpu_ratio = rps_ratio = None
    if naive_hi is not None:
        naive_cpu = naive_hi.cpu_us_per_request
        cpu_ratio = cpu / naive_cpu
        rps_ratio = side_hi.requests_per_second / naive_hi.requests_per_second
        targets_met["cpu_vs_naive"] = cpu_ratio <= MAX_CPU_RATIO_TO_NAIVE
    return Summary(
        throughput_ratio=ratio,
        cpu_ratio_to_nginx=cpu / nginx_hi.cpu_us_per_request,
        p50_ratio_to_direct=side_lo.p50_ms / direct_lo.p50_ms,
        p99_ratio_to_direct=side_lo.p99_ms / direct_lo.p99_ms,
        p50_ratio_to_nginx=side_lo.p50_ms / nginx_lo.p50_ms,
        p99_ratio_to_nginx=side_lo.p99_ms / nginx_lo.p99_ms,
        added_p50_ms=side_lo.p50_ms - direct_lo.p50_ms,
        added_p99_ms=side_lo.p99_ms - direct_lo.p99_ms,
        nginx_added_p50_ms=nginx_lo.p50_ms - direct_lo.p50_ms,
        nginx_added_p99_ms=nginx_lo.p99_ms - direct_lo.p99_ms,
        sidecar_cpu_us_per_request=cpu,
        nginx_cpu_us_per_request=nginx_hi.cpu_us_per_request,
        targets_met=targets_met,
        naive_cpu_us_per_request=naive_cpu,
        cpu_ratio_to_naive=cpu_ratio,
        throughput_ratio_to_naive=rps_ratio,
    )


def _report(results: Sequence[RunResult], summary: Summary, settings: Mapping[str, str]) -> str:
    shown = " ".join(f"{k}={v}" for k, v in sorted(settings.items())) or "its defaults"
    lines = [
        f"sidecar settings: {shown}",
        f"{'target':<8} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10} {'errors':>6}"
        f" {'other CPU':>9}",
    ]
    for r in results:
        lines.append(
            f"{r.target:<8} {r.connections:>5} {r.requests_per_second:>9.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f}"
            f" {r.cpu_us_per_request:>10.1f} {r.errors:>6} {r.other_cpu_cores:>9.2f}"
        )
    s = summary
    ok = {True: "met", False: "MISSED"}
    t = s.targets_met
    lines += [
        "(CPU us/req is the process under test: the upstream nginx worker for direct, the proxy nginx",
        " worker for nginx, the sidecar's processes for sidecar, the uvicorn + aiohttp process for naive. Other",
        " CPU is what processes this benchmark did not start used meanwhile, in cores: above ~0.2 the",
        " machine was busy and the numbers are low.)",
        "",
        f"sidecar/nginx throughput at {THROUGHPUT_CONNECTIONS} connections: {s.throughput_ratio:.3f}"
        f"  (target >= {MIN_THROUGHPUT_RATIO:.2f}: {ok[t['throughput']]})",
        f"sidecar/nginx CPU per request at {THROUGHPUT_CONNECTIONS} connections: {s.cpu_ratio_to_nginx:.3f}"
        f"  ({NO_TARGET}); sidecar {s.sidecar_cpu_us_per_request:.1f} us, nginx {s.nginx_cpu_us_per_request:.1f} us",
        f"p50 at {LATENCY_CONNECTIONS} connection: sidecar/direct {s.p50_ratio_to_direct:.2f},"
        f" sidecar/nginx {s.p50_ratio_to_nginx:.2f}  ({NO_TARGET}); the sidecar adds {s.added_p50_ms:.3f} ms,"
        f" nginx {s.nginx_added_p50_ms:.3f} ms",
        f"p99 at {LATENCY_CONNECTIONS} connection: sidecar/direct {s.p99_ratio_to_direct:.2f},"
        f" sidecar/nginx {s.p99_ratio_to_nginx:.2f}  ({NO_TARGET}); the sidecar adds {s.added_p99_ms:.3f} ms,"
        f" nginx {s.nginx_added_p99_ms:.3f} ms",
    ]
    if s.cpu_ratio_to_naive is not None and s.throughput_ratio_to_naive is not None:
        lines += [
            f"sidecar/naive CPU per request at {THROUGHPUT_CONNECTIONS} connections: {s.cpu_ratio_to_naive:.3f}"
            f"  (target <= {MAX_CPU_RATIO_TO_NAIVE:.2f}: {ok[t['cpu_vs_naive']]});"
            f" naive: {s.naive_cpu_us_per_request:.1f} us",
            f"sidecar/naive throughput at {THROUGHPUT_CONNECTIONS} connections: {s.throughput_ratio_to_naive:.3f}"
            f"  ({NO_TARGET})",
        ]
    if any(r.other_cpu_cores > OTHER_CPU_WARNING for r in results):
        lines.append(f"WARNING: other processes used over {OTHER_CPU_WARNING:g} cores in some runs; rerun when quiet.")
    if any(r.errors for r in results):
        lines.append("WARNING: some runs had socket errors or non-2xx answers; their numbers are suspect.")
    return "\n".join(lines)


def run(duration: float, warmup: float, settings: Mapping[str, str], naive: bool = False) -> list[RunResult]:
    """Start the upstream and the proxies, measure each target, stop everything."""
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found on PATH; `make apt-bench` installs it")
    upstream_port, nginx_port, sidecar_port, naive_port = _free_port(), _free_port(), _free_port(), _free_port()
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="sidecar-bench-") as name, contextlib.ExitStack() as stack:
        tmp = Path(name)
        script = _write_wrk_script(tmp)
        # nginx's return takes a quoted string: the JSON has no single quotes.
        upstream_block = _UPSTREAM_SERVER.format(host=HOST, port=upstream_port, response=RESPONSE_BODY)
        proxy_block = _PROXY_SERVER.format(host=HOST, port=nginx_port, upstream_port=upstream_port)
        targets = [
            ("direct", upstream_port, stack.enter_context(_nginx(tmp, "upstream", upstream_block, upstream_port))),
            ("nginx", nginx_port, stack.enter_context(_nginx(tmp, "proxy", proxy_block, nginx_port))),
            ("sidecar", sidecar_port, stack.enter_context(_sidecar(tmp, upstream_port, sidecar_port, settings))),
        ]
        if naive:
            targets.append((NAIVE, naive_port, stack.enter_context(_naive(tmp, upstream_port, naive_port))))
        # One target at a time, so the others sit idle and take no CPU from it.
        ours = tuple(pid for _, _, pid in targets)
        for target, port, pid in targets:
            results += _measure(target, port, pid, ours, script, duration, warmup)
    return results


def sidecar_settings(
    parser: argparse.ArgumentParser, items: Sequence[str], defaults: Mapping[str, str]
) -> dict[str, str]:
    """``defaults`` overridden by each ``--sidecar-env SIDECAR_NAME=VALUE``; a malformed one is a usage error."""
    settings = dict(defaults)
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("SIDECAR_"):
            parser.error(f"--sidecar-env {item!r}: expected SIDECAR_NAME=VALUE")
        settings[name] = value
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proxy_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target (default 2; 0: none)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    has_aiohttp = importlib.util.find_spec("aiohttp") is not None
    parser.add_argument(
        "--naive",
        action=argparse.BooleanOptionalAction,
        default=has_aiohttp,
        help="also measure the naive uvicorn + aiohttp proxy and give the sidecar's ratios to it"
        f" (default: on when aiohttp is installed, {'on' if has_aiohttp else 'off'} here)",
    )
    parser.add_argument(
        "--sidecar-env",
        action="append",
        default=[],
        metavar="SIDECAR_NAME=VALUE",
        help="a setting for the sidecar, e.g. SIDECAR_SAMPLE_RATE=1 to measure with capture; repeatable"
        " (default: capture off, SIDECAR_SAMPLE_RATE=0 and SIDECAR_LOG_SINK=none)",
    )
    args = parser.parse_args(argv)
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    # The targets are for the proxy alone: capture off unless asked for.
    settings = sidecar_settings(parser, args.sidecar_env, PROXY_ONLY)
    if args.naive and not has_aiohttp:
        parser.error("--naive needs aiohttp (a dev dependency: pip install -e '.[dev]')")
    results = run(args.duration, args.warmup, settings, naive=args.naive)
    summary = summarize(results)
    print(_report(results, summary, settings))
    if args.json is not None:
        payload = {
            "duration_seconds": args.duration,
            "sidecar_settings": settings,
            "targets": {
                "min_throughput_ratio": MIN_THROUGHPUT_RATIO,
                "max_cpu_ratio_to_naive": MAX_CPU_RATIO_TO_NAIVE,
            },
            "runs": [asdict(r) for r in results],
            "summary": asdict(summary),
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
