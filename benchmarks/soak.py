"""Does the sidecar's memory stay flat over a long run, and is every record accounted for? A soak at capture rate 1.

The sidecar (``python -m sidecar serve``: capture at rate 1, the prediction
log in a file sink, the prediction store on) in front of a fast upstream:
nginx when it is on ``PATH`` (``proxy_overhead``'s upstream block), else
uvicorn serving a fixed answer (``asgi_floor``'s ``asgi`` app). An asyncio
load generator in this process POSTs a small KServe V1 prediction over
``--connections`` keep-alive connections until ``--requests`` have been
answered (default 1,000,000) or ``--duration`` seconds have passed, whichever
comes first, so the run always stops by itself.

Every ``--interval`` seconds (default 10) it samples the sidecar's RSS from
``/proc/PID/status``. Two verdicts:

- **flat**: the mean RSS of the last third of the samples taken after
  ``--warmup`` is within ±10% of the first third's;
- **accounted**: once the pipeline has drained, every request answered is in
  ``mlsidecar_requests_total``; every exchange is captured or counted dropped
  (exact at ``--rate 1`` only, where the sampler keeps everything); every
  captured row is written, dropped or failed in each sink, and stored,
  evicted, dropped or failed in the prediction store; and the log files hold
  as many lines as the sink counted written.

Usage::

    python -m benchmarks.soak                                   # 1M requests
    python -m benchmarks.soak --requests 100000 --duration 30 --warmup 5 --json soak.json

Everything runs on 127.0.0.1 on free ports, and every process started here is
stopped before exit. The exit status is 0 whatever the verdicts (this is a
measurement, as the other benchmarks are); it is non-zero only if something
failed to start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import uvloop
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.proxy_overhead import (
    _UPSTREAM_SERVER,
    HOST,
    REQUEST_BODY,
    RESPONSE_BODY,
    _cpu_seconds,
    _free_port,
    _nginx,
    _serve_process,
    sidecar_environment,
    sidecar_settings,
)

__all__ = ["Sample", "Soak", "flat", "main", "reconcile"]

FLAT_TOLERANCE = 0.10  # the last third's mean RSS within ±10% of the first third's
_DRAIN_SECONDS = 60.0  # after the load, how long the pipeline may take to account for everything
_PATH = "/v1/models/iris:predict"


@dataclass(frozen=True)
class Sample:
    """One RSS sample of the sidecar process."""

    seconds: float  # since the load started
    requests: int  # answered so far
    rss_mib: float


@dataclass
class Soak:
    """What one run measured."""

    requests: int = 0  # answered, whatever the status
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0  # connections that failed mid-request
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the sidecar process's utime + stime during the load
    samples: list[Sample] = field(default_factory=list)
    counts: dict[str, float] = field(default_factory=dict)  # the accounting, from /metrics after draining
    log_lines: int = 0


# --- the load -------------------------------------------------------------------------------------


class _Load:
    """A shared budget of requests and time for the connections to draw from."""

    def __init__(self, requests: int, deadline: float, soak: Soak) -> None:
        self.left = requests
        self.deadline = deadline
        self.soak = soak

    def take(self) -> bool:
        if self.left <= 0 or time.monotonic() >= self.deadline:
            return False
        self.left -= 1
        return True


def _request(port: int) -> bytes:
    body = REQUEST_BODY.encode()
    head = (
        f"POST {_PATH} HTTP/1.1\r\nhost: {HOST}:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


async def _connection(port: int, load: _Load) -> None:
    request = _request(port)
    soak = load.soak
    while load.take():
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            soak.errors += 1
            await asyncio.sleep(0.1)
            continue
        try:
            while True:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status, length = _parse_head(head)
                await reader.readexactly(length)
                soak.requests += 1
                soak.statuses[status] += 1
                if not load.take():
                    return
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            # The request taken is lost; the next loop takes another on a new connection.
            soak.errors += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _parse_head(head: bytes) -> tuple[int, int]:
    """Status and Content-Length of a response head; ValueError if it has no length (the upstreams always send one)."""
    status = int(head[9:12])
    lower = head.lower()
    start = lower.find(b"\r\ncontent-length:")
    if start < 0:
        raise ValueError(f"no content-length in {head!r}")
    end = lower.find(b"\r\n", start + 2)
    return status, int(lower[start + 17 : end])


async def _sample(pid: int, soak: Soak, started: float, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        soak.samples.append(Sample(time.monotonic() - started, soak.requests, _rss_mib(pid)))
        last = soak.samples[-1]
        print(f"  {last.seconds:>6.0f} s {last.requests:>9} requests  RSS {last.rss_mib:7.1f} MiB", file=sys.stderr)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def _drive(port: int, pid: int, requests: int, duration: float, connections: int, interval: float) -> Soak:
    soak = Soak()
    started = time.monotonic()
    load = _Load(requests, started + duration, soak)
    cpu = _cpu_seconds(pid)
    sampler = asyncio.create_task(_sample(pid, soak, started, interval))
    try:
        await asyncio.gather(*(_connection(port, load) for _ in range(connections)))
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    soak.seconds = time.monotonic() - started
    soak.cpu_seconds = _cpu_seconds(pid) - cpu
    return soak


# --- the verdicts ---------------------------------------------------------------------------------


def flat(samples: Sequence[Sample], warmup: float) -> tuple[bool | None, float, float]:
    """Whether RSS stayed flat: (verdict, first third's mean MiB, last third's); None with under three samples."""
    kept = [s.rss_mib for s in samples if s.seconds >= warmup]
    if len(kept) < 3:
        return None, float("nan"), float("nan")
    third = len(kept) // 3
    first, last = sum(kept[:third]) / third, sum(kept[-third:]) / third
    return abs(last / first - 1) <= FLAT_TOLERANCE, first, last


def _counts(admin_port: int) -> dict[str, float]:
    """The accounting's counters from ``/metrics``, summed over the labels that do not matter here."""
    with urllib.request.urlopen(f"http://{HOST}:{admin_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = {
                "mlsidecar_requests_total": "requests",
                "mlsidecar_captures_total": "captured",
                "mlsidecar_capture_dropped_total": "capture_dropped",
                "mlsidecar_prediction_store_rows": "store_rows",
                "mlsidecar_prediction_store_evicted_total": "store_evicted",
                "mlsidecar_prediction_store_dropped_total": "store_dropped",
            }.get(s.name)
            if s.name == "mlsidecar_log_records_total":
                key = f"log_{s.labels['sink']}_{s.labels['outcome']}"
            elif s.name == "mlsidecar_prediction_store_failures_total" and s.labels["kind"] == "prediction":
                key = "store_failed"
            elif s.name == "mlsidecar_monitor_errors_total" and s.labels["stage"] == "process":
                key = "process_errors"
            if key is not None:
                counts[key] = counts.get(key, 0.0) + s.value
    return counts


def reconcile(answered: int, counts: Mapping[str, float], log_lines: int | None, exact_capture: bool) -> list[str]:
    """Every way a record could be lost without a count: empty when each request, exchange and row is accounted for.

    One row per request (the load's payload has one instance), every answer 2xx.
    """
    problems = []
    if counts.get("requests", 0) != answered:
        problems.append(f"mlsidecar_requests_total is {counts.get('requests', 0):g}, {answered} answered")
    captured = counts.get("captured", 0)
    handled = captured + counts.get("capture_dropped", 0) + counts.get("process_errors", 0)
    if exact_capture and handled != answered:
        problems.append(f"{answered} exchanges, {handled:g} captured or counted dropped")
    sinks = sorted({key.split("_")[1] for key in counts if key.startswith("log_")})
    for sink in sinks:
        rows = sum(counts.get(f"log_{sink}_{outcome}", 0) for outcome in ("written", "dropped", "failed"))
        if rows != captured:
            problems.append(f"sink {sink}: {rows:g} rows written, dropped or failed, {captured:g} captured")
    if log_lines is not None and "file" in sinks and log_lines != counts.get("log_file_written", 0):
        problems.append(f"the log files hold {log_lines} lines, the file sink counted {counts['log_file_written']:g}")
    stored = sum(counts.get(key, 0) for key in ("store_rows", "store_evicted", "store_dropped", "store_failed"))
    if stored != captured:
        problems.append(f"the store: {stored:g} rows stored, evicted, dropped or failed, {captured:g} captured")
    return problems


# --- processes ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _upstream(tmp: Path, port: int) -> Iterator[str]:
    """nginx when installed, else uvicorn with a fixed answer; yield which."""
    if shutil.which("nginx") is not None:
        block = _UPSTREAM_SERVER.format(host=HOST, port=port, response=RESPONSE_BODY)
        with _nginx(tmp, "upstream", block, port):
            yield "nginx"
    else:
        cmd = [sys.executable, "-m", "benchmarks.asgi_floor", "--serve", "asgi", str(port), "0"]
        with _serve_process(cmd, port, tmp / "upstream.log"):
            yield "uvicorn"


@contextlib.contextmanager
def _sidecar(tmp: Path, upstream_port: int, port: int, admin_port: int, settings: Mapping[str, str]) -> Iterator[int]:
    """``python -m sidecar serve`` with only this run's ``SIDECAR_*`` settings; yield its pid."""
    defaults = {
        "SIDECAR_SAMPLE_RATE": "1",
        "SIDECAR_LOG_SINK": f"file:{tmp / 'predictions.jsonl'}",
        # Rotated, so no file grows without bound, and kept, so every line can be counted.
        "SIDECAR_LOG_FILE_MAX_BYTES": str(256 << 20),
        "SIDECAR_LOG_FILE_BACKUPS": "100",
    }
    env = sidecar_environment(
        {**defaults, **settings, "SIDECAR_ADMIN_PORT": str(admin_port)},
        upstream_port=upstream_port,
        port=port,
        state_dir=tmp / "state",
        shutdown_seconds=10,
    )
    with _serve_process([sys.executable, "-m", "sidecar", "serve"], port, tmp / "sidecar.log", env) as pid:
        yield pid


def _log_lines(tmp: Path) -> int:
    lines = 0
    for path in tmp.glob("predictions.jsonl*"):
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                lines += chunk.count(b"\n")
    return lines


def run(args: argparse.Namespace, settings: Mapping[str, str]) -> tuple[Soak, str, bool]:
    """Start the upstream and the sidecar, soak, drain, count; stop everything. (soak, upstream, exact capture)."""
    upstream_port, port, admin_port = _free_port(), _free_port(), _free_port()
    with tempfile.TemporaryDirectory(prefix="sidecar-soak-") as name:
        tmp = Path(name)
        with _upstream(tmp, upstream_port) as upstream:
            with _sidecar(tmp, upstream_port, port, admin_port, settings) as pid:
                print(f"soak: sidecar pid {pid} in front of {upstream}; {args.requests} requests", file=sys.stderr)
                # uvloop, as the sidecar runs: the load generator then needs less of the CPU they share.
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    soak = runner.run(_drive(port, pid, args.requests, args.duration, args.connections, args.interval))
                exact = settings.get("SIDECAR_SAMPLE_RATE", "1") in ("1", "1.0")
                deadline = time.monotonic() + _DRAIN_SECONDS
                # The worker, the sinks and the store catch up on their own: wait until they account for it all.
                while reconcile(soak.requests, soak.counts, None, exact) and time.monotonic() < deadline:
                    time.sleep(0.5)
                    soak.counts = _counts(admin_port)
            # Stopped: the file sink has flushed and closed its file.
            soak.log_lines = _log_lines(tmp)
    return soak, upstream, exact


def _report(soak: Soak, upstream: str, warmup: float, exact: bool, settings: Mapping[str, str]) -> str:
    verdict, first, last = flat(soak.samples, warmup)
    problems = reconcile(soak.requests, soak.counts, soak.log_lines, exact)
    rate = soak.requests / soak.seconds if soak.seconds else 0.0
    cpu = soak.cpu_seconds / soak.requests * 1e6 if soak.requests else float("nan")
    c = soak.counts
    lines = [
        f"sidecar settings: {' '.join(f'{k}={v}' for k, v in sorted(settings.items())) or 'the soak defaults'};"
        f" upstream: {upstream}",
        f"{soak.requests} requests answered in {soak.seconds:.0f} s ({rate:.0f} req/s, sidecar CPU {cpu:.0f} us/req);"
        f" statuses {dict(soak.statuses)}; connection errors {soak.errors}",
        f"captured {c.get('captured', 0):g}, capture dropped {c.get('capture_dropped', 0):g},"
        f" log lines {soak.log_lines}, stored {c.get('store_rows', 0):g}"
        f" (evicted {c.get('store_evicted', 0):g}, dropped {c.get('store_dropped', 0):g},"
        f" failed {c.get('store_failed', 0):g})",
        f"RSS: {len(soak.samples)} samples, {min((s.rss_mib for s in soak.samples), default=0):.1f}"
        f"-{max((s.rss_mib for s in soak.samples), default=0):.1f} MiB",
    ]
    if verdict is None:
        lines.append(f"flat: too few samples after the {warmup:g} s warm-up for a verdict (need 3)")
    else:
        lines.append(
            f"flat: first third {first:.1f} MiB, last third {last:.1f} MiB ({last / first - 1:+.1%};"
            f" within ±{FLAT_TOLERANCE:.0%}: {'yes' if verdict else 'NO'})"
        )
    lines.append("accounted: " + ("yes, every request, exchange and row" if not problems else "NO"))
    lines += [f"  {problem}" for problem in problems]
    if not exact:
        lines.append("  (at a sample rate below 1 the sampler's own drops are not counted: captures not checked)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000, help="requests to send (default 1000000)")
    parser.add_argument(
        "--duration", type=float, default=3600.0, help="stop after this many seconds at the latest (default 3600)"
    )
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between RSS samples (default 10)")
    parser.add_argument(
        "--warmup", type=float, default=30.0, help="seconds of load before samples count for the verdict (default 30)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument(
        "--sidecar-env",
        action="append",
        default=[],
        metavar="SIDECAR_NAME=VALUE",
        help="a setting for the sidecar, e.g. SIDECAR_LOG_QUEUE_MAX_BYTES=1048576; repeatable"
        " (default: SIDECAR_SAMPLE_RATE=1 and a file sink in the run's temporary directory)",
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.connections < 1 or args.duration <= 0 or args.interval <= 0 or args.warmup < 0:
        parser.error("--requests, --connections, --duration and --interval must be positive, --warmup not negative")
    settings = sidecar_settings(parser, args.sidecar_env, {})
    soak, upstream, exact = run(args, settings)
    print(_report(soak, upstream, args.warmup, exact, settings))
    if args.json is not None:
        verdict, first, last = flat(soak.samples, args.warmup)
        payload = {
            "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "upstream": upstream,
            "soak": {**asdict(soak), "statuses": {str(k): v for k, v in soak.statuses.items()}},
            "flat": {"verdict": verdict, "first_third_mib": first, "last_third_mib": last},
            "problems": reconcile(soak.requests, soak.counts, soak.log_lines, exact),
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
