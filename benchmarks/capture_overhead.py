"""What does capture cost? The sidecar at sampling rates 0, 0.1 and 1.0 with the file sink, in one run.

The same fast nginx upstream as ``proxy_overhead``; one sidecar per rate, each
writing its prediction log to a file in the run's temporary directory, with
its default monitoring (the store, quality, drift from a learned reference),
in its default mode (``SIDECAR_MONITORING_PLANE=process``). wrk drives each at
1 and 32 connections. The same run measures ``proxy_overhead``'s baselines:
an nginx reverse proxy and the naive uvicorn + aiohttp proxy.

Targets (issue 15), each against the same run's baseline:

- p99 at 1 connection, rate 1.0: at most 1 ms above rate 0's;
- p99 at 32 connections, rate 1.0: at most 2x rate 0's;
- throughput at 32 connections: rate 1.0 at least 0.55x rate 0's, rate 0.1 at least 0.9x;
- the proxy alone (rate 0, which turns capture off): throughput at least
  0.30x nginx's, CPU per request at most 0.5x the naive proxy's.

Also printed, without a target: CPU per captured record, and the share of
the exchanges each sidecar kept that reached the monitors (the rest were
dropped and counted, as a busy monitoring side must).

The machine's load drifts, so the run is in ``--rounds`` rounds (default 3),
in the order nginx, naive, rates 0, 0.1, 1, then reversed, and so on; each
figure is the median over the rounds, which one disturbed round does not move,
and each round's own target values are printed too.

Usage::

    python -m benchmarks.capture_overhead --duration 10
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.proxy_overhead import (
    _PROXY_SERVER,
    _UPSTREAM_SERVER,
    HOST,
    LATENCY_CONNECTIONS,
    LOADS,
    NAIVE,
    RESPONSE_BODY,
    THROUGHPUT_CONNECTIONS,
    RunResult,
    _find,
    _free_port,
    _measure,
    _naive,
    _nginx,
    _sidecar,
    _write_wrk_script,
)
from sidecar.prometheus import PREFIX

__all__ = ["Run", "main", "ratios", "targets"]

RATES = (0.0, 0.1, 1.0)


@dataclass(frozen=True)
class Run:
    """One run: each rate's figures, the baselines', and what each sidecar's capture did.

    ``rates`` and ``baselines`` hold each target's median over the rounds at each load; ``every``
    holds each round's own results, in the order measured.
    """

    rates: dict[float, list[RunResult]]
    baselines: list[RunResult]  # nginx, and naive when aiohttp is installed
    lines: dict[float, int]  # log lines written, after the sidecar stopped and flushed (summed over the rounds)
    kept: dict[float, float]  # exchanges the sampler kept, and of them...
    dropped: dict[float, float]  # ...those dropped (counted) rather than monitored
    every: list[list[RunResult]] = field(default_factory=list)  # each round's results


def _capture_counts(admin_port: int) -> tuple[float, float]:
    """``mlsidecar_captures_total`` and the sum of ``mlsidecar_capture_dropped_total``, scraped."""
    with urllib.request.urlopen(f"http://{HOST}:{admin_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    captured = dropped = 0.0
    for line in text.splitlines():
        if line.startswith(PREFIX + "captures_total{"):
            captured += float(line.rsplit(" ", 1)[1])
        elif line.startswith(PREFIX + "capture_dropped_total{"):
            dropped += float(line.rsplit(" ", 1)[1])
    return captured + dropped, dropped


def _rate_name(rate: float) -> str:
    return f"rate {rate:g}"


def run(duration: float, warmup: float, rounds: int = 1) -> Run:
    """Measure the baselines and each rate, ``rounds`` times; each figure is the median over the rounds."""
    lines: Counter[float] = Counter()
    kept: dict[float, float] = dict.fromkeys(RATES, 0.0)
    dropped: dict[float, float] = dict.fromkeys(RATES, 0.0)
    every: list[list[RunResult]] = []
    upstream_port, nginx_port, naive_port = _free_port(), _free_port(), _free_port()
    with tempfile.TemporaryDirectory(prefix="sidecar-capture-bench-") as name, contextlib.ExitStack() as stack:
        tmp = Path(name)
        script = _write_wrk_script(tmp)
        block = _UPSTREAM_SERVER.format(host=HOST, port=upstream_port, response=RESPONSE_BODY)
        upstream_pid = stack.enter_context(_nginx(tmp, "upstream", block, upstream_port))
        proxy_block = _PROXY_SERVER.format(host=HOST, port=nginx_port, upstream_port=upstream_port)
        targets = [("nginx", nginx_port, stack.enter_context(_nginx(tmp, "proxy", proxy_block, nginx_port)))]
        if importlib.util.find_spec("aiohttp") is not None:
            targets.append((NAIVE, naive_port, stack.enter_context(_naive(tmp, upstream_port, naive_port))))
        ours = (upstream_pid, *(pid for _, _, pid in targets))
        for index in range(rounds):
            results: list[RunResult] = []
            # Baselines and rates, then the other way round: a load that drifts through the run
            # weighs on every target alike.
            order: list[str | float] = [*(target for target, _, _ in targets), *RATES]
            for which in order if index % 2 == 0 else order[::-1]:
                if isinstance(which, str):
                    target, port, pid = next(t for t in targets if t[0] == which)
                    results += _measure(target, port, pid, ours, script, duration, warmup)
                    continue
                rate = which
                log = tmp / f"predictions-{rate}-{index}.jsonl"
                admin_port = _free_port()
                settings = {
                    "SIDECAR_SAMPLE_RATE": str(rate),
                    "SIDECAR_LOG_SINK": f"file:{log}",
                    "SIDECAR_ADMIN_PORT": str(admin_port),
                }
                port = _free_port()
                with _sidecar(tmp, upstream_port, port, settings) as pid:
                    results += _measure(_rate_name(rate), port, pid, (*ours, pid), script, duration, warmup)
                    time.sleep(1.0)  # the monitoring side's last batches, and its counters' next mirror
                    counted = _capture_counts(admin_port)
                kept[rate] += counted[0]
                dropped[rate] += counted[1]
                lines[rate] += sum(1 for _ in log.open("rb")) if log.exists() else 0
                log.unlink(missing_ok=True)
            every.append(results)
    measured = [r for results in every for r in results]
    baselines = [_median(measured, target, c) for target, _, _ in targets for _, c in LOADS]
    rates = {rate: [_median(measured, _rate_name(rate), c) for _, c in LOADS] for rate in RATES}
    return Run(rates, baselines, dict(lines), kept, dropped, every)


def _median(results: Sequence[RunResult], target: str, connections: int) -> RunResult:
    """``target``'s figures at ``connections``, each the median over the rounds (errors summed, other CPU the most)."""
    runs = [r for r in results if r.target == target and r.connections == connections]
    return RunResult(
        target,
        connections,
        sum(r.requests for r in runs),
        statistics.median(r.requests_per_second for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        statistics.median(r.cpu_us_per_request for r in runs),
        sum(r.errors for r in runs),
        max(r.other_cpu_cores for r in runs),
    )


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
        hi = _find(runs, _rate_name(rate), THROUGHPUT_CONNECTIONS)
        lo = _find(runs, _rate_name(rate), LATENCY_CONNECTIONS)
        per_record = (hi.cpu_us_per_request - base_hi.cpu_us_per_request) / rate
        out[rate] = RateRatios(
            throughput=hi.requests_per_second / base_hi.requests_per_second,
            p50=lo.p50_ms / base_lo.p50_ms,
            p99=lo.p99_ms / base_lo.p99_ms,
            cpu_us_per_record=per_record,
            record_to_request=per_record / base_hi.cpu_us_per_request,
        )
    return out


# The targets (see the module docstring).
MAX_ADDED_P99_MS_AT_1 = 1.0
MAX_P99_RATIO_AT_32 = 2.0
MIN_THROUGHPUT = {1.0: 0.55, 0.1: 0.9}
MIN_PROXY_TO_NGINX = 0.30
MAX_PROXY_CPU_TO_NAIVE = 0.5


def targets(run: Run) -> list[tuple[str, float, str, bool]]:
    """Each target: what, the value (of the medians over the rounds), the bound as text, whether it is met."""
    return _targets(run.rates, run.baselines)


def _targets(
    rates: Mapping[float, Sequence[RunResult]], baselines: Sequence[RunResult]
) -> list[tuple[str, float, str, bool]]:
    base_lo = _find(rates[0.0], "rate 0", LATENCY_CONNECTIONS)
    base_hi = _find(rates[0.0], "rate 0", THROUGHPUT_CONNECTIONS)
    full_lo = _find(rates[1.0], "rate 1", LATENCY_CONNECTIONS)
    full_hi = _find(rates[1.0], "rate 1", THROUGHPUT_CONNECTIONS)
    added = full_lo.p99_ms - base_lo.p99_ms
    out = [
        (f"rate 1 p99 at {LATENCY_CONNECTIONS} connection, ms above rate 0", added,
         f"<= {MAX_ADDED_P99_MS_AT_1:g}", added <= MAX_ADDED_P99_MS_AT_1),
        (f"rate 1 p99 at {THROUGHPUT_CONNECTIONS} connections / rate 0's", full_hi.p99_ms / base_hi.p99_ms,
         f"<= {MAX_P99_RATIO_AT_32:g}", full_hi.p99_ms / base_hi.p99_ms <= MAX_P99_RATIO_AT_32),
    ]  # fmt: skip
    for rate, bound in MIN_THROUGHPUT.items():
        ratio = _find(rates[rate], _rate_name(rate), THROUGHPUT_CONNECTIONS).requests_per_second
        ratio /= base_hi.requests_per_second
        out.append((f"rate {rate:g} throughput at {THROUGHPUT_CONNECTIONS} connections / rate 0's", ratio,
                    f">= {bound:g}", ratio >= bound))  # fmt: skip
    nginx = _find(baselines, "nginx", THROUGHPUT_CONNECTIONS)
    ratio = base_hi.requests_per_second / nginx.requests_per_second
    out.append(("proxy alone (rate 0) throughput / nginx's", ratio, f">= {MIN_PROXY_TO_NGINX:g}",
                ratio >= MIN_PROXY_TO_NGINX))  # fmt: skip
    naive = next((r for r in baselines if r.target == NAIVE and r.connections == THROUGHPUT_CONNECTIONS), None)
    if naive is not None:
        ratio = base_hi.cpu_us_per_request / naive.cpu_us_per_request
        out.append(("proxy alone (rate 0) CPU per request / the naive proxy's", ratio,
                    f"<= {MAX_PROXY_CPU_TO_NAIVE:g}", ratio <= MAX_PROXY_CPU_TO_NAIVE))  # fmt: skip
    return out


def report(run: Run) -> str:
    out = [f"{'target':>8} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10} {'other CPU':>9}"
           f"   (medians over {len(run.every)} round(s); other CPU: the highest round)"]  # fmt: skip
    every = [*run.baselines, *(r for runs in run.rates.values() for r in runs)]
    for r in every:
        out.append(
            f"{r.target:>8} {r.connections:>5} {r.requests_per_second:>9.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f}"
            f" {r.cpu_us_per_request:>10.1f} {r.other_cpu_cores:>9.2f}"
        )
    out += ["", "(a sidecar's CPU us/req is all its processes': the proxy, the fork server, the monitoring process)"]
    out += ["", "targets, each against the same run:"]
    for what, value, bound, met in targets(run):
        out.append(f"  {what}: {value:.3f}  (target {bound}: {'met' if met else 'MISSED'})")
    if len(run.every) > 1:
        out += ["each round's own:"]
        for index, results in enumerate(run.every, 1):
            rates = {rate: [_find(results, _rate_name(rate), c) for _, c in LOADS] for rate in RATES}
            baselines = [r for r in results if not r.target.startswith("rate ")]
            values = "; ".join(
                f"{value:.3f}{'' if met else ' MISSED'}" for _, value, _, met in _targets(rates, baselines)
            )
            out.append(f"  round {index}: {values}")
    out += ["", "capture, per rate (no target):"]
    for rate, measured in ratios(run.rates).items():
        monitored = 1 - run.dropped[rate] / run.kept[rate] if run.kept[rate] else float("nan")
        out.append(
            f"  rate {rate:g}: CPU per captured record {measured.cpu_us_per_record:.1f} us"
            f" = {measured.record_to_request:.2f}x the CPU of proxying a request;"
            f" {run.kept[rate]:.0f} exchanges kept, {monitored:.1%} of them monitored, the rest dropped and counted;"
            f" {run.lines[rate]} log lines"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capture_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every target (default 3)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    print(report(run(args.duration, args.warmup, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
