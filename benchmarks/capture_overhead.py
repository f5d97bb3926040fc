"""What does capture cost? The sidecar at sampling rates 0, 0.1 and 1.0 with the file sink, in one run.

The same fast nginx upstream as ``proxy_overhead``; one sidecar per rate, each
writing its prediction log to a file in the run's temporary directory. wrk
drives each at 1 and 32 connections. Reported: req/s and CPU per request per
rate; then, per rate r, its ratios to rate 0 measured in the same run
(throughput at 32 connections, p50 and p99 at 1 connection) and the CPU each
captured record costs, (CPU at rate r − CPU at rate 0) / r, also as a ratio
to the CPU of proxying one request at rate 0.

No target is set for these ratios yet (the capture-latency work sets one),
so they are printed without a verdict. The earlier absolute target, rate 1.0
at 0.8x the throughput of rate 0, was set on another machine and is retired
(docs/architecture.md, "Performance targets").

Usage::

    python -m benchmarks.capture_overhead --duration 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.proxy_overhead import (
    _UPSTREAM_SERVER,
    HOST,
    LATENCY_CONNECTIONS,
    NO_TARGET,
    RESPONSE_BODY,
    THROUGHPUT_CONNECTIONS,
    RunResult,
    _find,
    _free_port,
    _measure,
    _nginx,
    _sidecar,
    _write_wrk_script,
)

__all__ = ["main", "ratios"]

RATES = (0.0, 0.1, 1.0)


def run(duration: float, warmup: float) -> tuple[dict[float, list[RunResult]], dict[float, int]]:
    """Measure each rate; also count the log lines each sidecar wrote, as a check that capture ran."""
    results: dict[float, list[RunResult]] = {}
    lines: dict[float, int] = {}
    upstream_port = _free_port()
    with tempfile.TemporaryDirectory(prefix="sidecar-capture-bench-") as name:
        tmp = Path(name)
        script = _write_wrk_script(tmp)
        block = _UPSTREAM_SERVER.format(host=HOST, port=upstream_port, response=RESPONSE_BODY)
        with _nginx(tmp, "upstream", block, upstream_port) as upstream_pid:
            for rate in RATES:
                log = tmp / f"predictions-{rate}.jsonl"
                settings = {"SIDECAR_SAMPLE_RATE": str(rate), "SIDECAR_LOG_SINK": f"file:{log}"}
                port = _free_port()
                with _sidecar(tmp, upstream_port, port, settings) as pid:
                    results[rate] = _measure(f"rate {rate:g}", port, pid, (upstream_pid, pid), script, duration, warmup)
                # The sidecar has stopped and flushed its sink.
                lines[rate] = sum(1 for _ in log.open("rb")) if log.exists() else 0
    return results, lines


@dataclass(frozen=True)
class RateRatios:
    """One sampling rate against rate 0, both measured in the same run."""

    throughput: float  # req/s at rate r / req/s at rate 0, at 32 connections
    p50: float  # p50 at rate r / p50 at rate 0, at 1 connection
    p99: float
    cpu_us_per_record: float  # (CPU per request at rate r − at rate 0) / r, at 32 connections
    record_to_request: float  # cpu_us_per_record / CPU per request at rate 0


def ratios(results: Mapping[float, Sequence[RunResult]]) -> dict[float, RateRatios]:
    """Every non-zero rate's ratios to rate 0."""
    base_hi = _find(results[0.0], "rate 0", THROUGHPUT_CONNECTIONS)
    base_lo = _find(results[0.0], "rate 0", LATENCY_CONNECTIONS)
    out: dict[float, RateRatios] = {}
    for rate, runs in results.items():
        if rate == 0.0:
            continue
        hi = _find(runs, f"rate {rate:g}", THROUGHPUT_CONNECTIONS)
        lo = _find(runs, f"rate {rate:g}", LATENCY_CONNECTIONS)
        per_record = (hi.cpu_us_per_request - base_hi.cpu_us_per_request) / rate
        out[rate] = RateRatios(
            throughput=hi.requests_per_second / base_hi.requests_per_second,
            p50=lo.p50_ms / base_lo.p50_ms,
            p99=lo.p99_ms / base_lo.p99_ms,
            cpu_us_per_record=per_record,
            record_to_request=per_record / base_hi.cpu_us_per_request,
        )
    return out


def report(results: dict[float, list[RunResult]], lines: dict[float, int]) -> str:
    out = [f"{'rate':>5} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10} {'other CPU':>9}"]
    for rate, runs in results.items():
        for r in runs:
            out.append(
                f"{rate:>5g} {r.connections:>5} {r.requests_per_second:>9.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f}"
                f" {r.cpu_us_per_request:>10.1f} {r.other_cpu_cores:>9.2f}"
            )
    out += ["", f"each rate against rate 0 of the same run ({NO_TARGET}; the capture-latency work sets it):"]
    for rate, measured in ratios(results).items():
        out.append(
            f"rate {rate:g}: throughput {measured.throughput:.3f}x at {THROUGHPUT_CONNECTIONS} connections;"
            f" p50 {measured.p50:.2f}x, p99 {measured.p99:.2f}x at {LATENCY_CONNECTIONS} connection;"
            f" CPU per captured record {measured.cpu_us_per_record:.1f} us"
            f" = {measured.record_to_request:.2f}x the CPU of proxying a request"
        )
    out.append("log lines written per rate: " + ", ".join(f"{r:g}: {n}" for r, n in lines.items()))
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capture_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per rate (default 2)")
    args = parser.parse_args(argv)
    results, lines = run(args.duration, args.warmup)
    print(report(results, lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
