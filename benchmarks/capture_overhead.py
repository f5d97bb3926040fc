"""What does capture cost? The sidecar at sampling rates 0, 0.1 and 1.0 with the file sink, in one run.

The same fast nginx upstream as ``proxy_overhead``; one sidecar per rate, each
writing its prediction log to a file in the run's temporary directory. wrk
drives each at 1 and 32 connections. Reported: req/s and CPU per request per
rate, the throughput ratio of rate 1.0 to rate 0 at 32 connections (target
>= 0.8), and the CPU each captured record costs, (CPU at rate r − CPU at
rate 0) / r.

Usage::

    python -m benchmarks.capture_overhead --duration 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.proxy_overhead import (
    _UPSTREAM_SERVER,
    HOST,
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

__all__ = ["main"]

RATES = (0.0, 0.1, 1.0)
MIN_CAPTURE_RATIO = 0.8  # throughput at rate 1.0 over rate 0, at 32 connections


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


def report(results: dict[float, list[RunResult]], lines: dict[float, int]) -> str:
    out = [f"{'rate':>5} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10} {'other CPU':>9}"]
    for rate, runs in results.items():
        for r in runs:
            out.append(
                f"{rate:>5g} {r.connections:>5} {r.requests_per_second:>9.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f}"
                f" {r.cpu_us_per_request:>10.1f} {r.other_cpu_cores:>9.2f}"
            )
    base = _find(results[0.0], "rate 0", THROUGHPUT_CONNECTIONS)
    full = _find(results[1.0], "rate 1", THROUGHPUT_CONNECTIONS)
    ratio = full.requests_per_second / base.requests_per_second
    verdict = "met" if ratio >= MIN_CAPTURE_RATIO else "MISSED"
    out += [
        "",
        f"throughput at rate 1.0 / rate 0, {THROUGHPUT_CONNECTIONS} connections: {ratio:.3f}"
        f"  (target >= {MIN_CAPTURE_RATIO:g}: {verdict})",
    ]
    for rate in RATES[1:]:
        hi = _find(results[rate], f"rate {rate:g}", THROUGHPUT_CONNECTIONS)
        per_record = (hi.cpu_us_per_request - base.cpu_us_per_request) / rate
        out.append(f"CPU per captured record at rate {rate:g}: {per_record:.1f} us")
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
