"""What does an experiment cost the proxy? Split and shadow mode against no experiment, in one run.

Issue 17's benchmark. Three sidecars, one at a time, in front of the same
fast nginx upstream as ``proxy_overhead``'s, each driven by wrk at 1 and 32
connections:

- ``none``: no experiment (``SIDECAR_EXPERIMENT_PATH`` unset), the baseline;
- ``split``: a split experiment, 50/50 by ``header:x-user-id``; control is the
  upstream, treatment a second server with the same answer, in the upstream's
  nginx worker (``--split-own-nginx``: a second nginx);
- ``shadow``: a shadow experiment; every client gets the upstream's answer and
  a copy of each request goes to the challenger.

wrk sends the same body to every target, with ``X-User-Id`` taking 1,000
values in turn, so both arms of the split get traffic; the sidecar without an
experiment and the shadow ignore the header.

Targets (issue 17), each a ratio to ``none`` in the same run:

- split mode: the sidecar's CPU per request at 32 connections within 1.1x;
- shadow mode: the client-side p50 and p99 at 32 connections within 1.1x.

A shadow that dropped its mirrors would meet its target for free, so the
report also gives what became of the mirrors, from the shadow sidecar's own
``mlsidecar_shadow_requests_total`` (sent, error, timeout, or dropped and
why) against the requests it served, and the requests each arm of the split
served, from ``mlsidecar_requests_total``.

The machine's load drifts, so the run is in ``--rounds`` rounds (default 3),
in the order none, split, shadow, then reversed, and so on; each figure is the
median over the rounds, which one disturbed round does not move, and each
round's ratios are printed too.

Usage::

    python -m benchmarks.experiment_overhead --duration 10 --json experiment.json

Everything runs on 127.0.0.1 on free ports and every process started here is
stopped before exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.proxy_overhead import (
    _UPSTREAM_SERVER,
    HOST,
    LATENCY_CONNECTIONS,
    NO_TARGET,
    OTHER_CPU_WARNING,
    PROXY_ONLY,
    REQUEST_BODY,
    RESPONSE_BODY,
    THROUGHPUT_CONNECTIONS,
    RunResult,
    _free_port,
    _measure,
    _nginx,
    _sidecar,
    sidecar_settings,
)
from sidecar.prometheus import PREFIX

__all__ = ["MODES", "Figures", "Run", "definition", "figures", "main", "targets"]

MODES = ("none", "split", "shadow")
MAX_RATIO = 1.1  # both targets: split's CPU per request, shadow's p50 and p99, over none's

USER_HEADER = "x-user-id"
USERS = 1000  # distinct X-User-Id values wrk cycles through: about half land in each arm

# Until the counters stop moving (the shadow's queue drained, the admin side's
# copy refreshed, which is every second in process mode), or this long.
_SETTLE_SECONDS = 15.0
_SETTLE_POLL = 1.2


def definition(mode: str, challenger: str) -> str:
    """The experiment file for ``split`` or ``shadow`` mode, the challenger at the URL ``challenger``."""
    if mode == "split":
        return (
            "name: bench-split\nmode: split\n"
            f"variants:\n  control: {{weight: 0.5}}\n  treatment: {{weight: 0.5, upstream: {challenger}}}\n"
            f"assignment: {{key: 'header:{USER_HEADER}'}}\n"
            "metrics:\n  primary: [{name: conversion, source: outcome, kind: proportion}]\nmde: 0.02\n"
        )
    # Shadow mode takes label metrics only: the clients never see the challenger's answer.
    return (
        "name: bench-shadow\nmode: shadow\n"
        f"variants:\n  control: {{}}\n  treatment: {{upstream: {challenger}}}\n"
        "metrics:\n  primary: [{name: accuracy, source: label}]\nmde: 0.02\n"
    )


def _write_wrk_script(directory: Path) -> Path:
    # The requests are built once per wrk thread and replayed in turn, so wrk's
    # work per request is one table lookup; every target gets the same script,
    # so that cost is the same for each.
    script = directory / "users.lua"
    script.write_text(f"""\
wrk.method = "POST"
wrk.body = [==[{REQUEST_BODY}]==]
wrk.headers["Content-Type"] = "application/json"
local requests = {{}}
local turn = 0
function init(args)
  for i = 1, {USERS} do
    local headers = {{}}
    for name, value in pairs(wrk.headers) do headers[name] = value end
    headers["{USER_HEADER}"] = "u-" .. i
    requests[i] = wrk.format(nil, nil, headers, nil)
  end
end
function request()
  turn = turn % {USERS} + 1
  return requests[turn]
end
""")
    return script


# --- what the sidecar says it did ------------------------------------------------------------------


def _scrape(admin_port: int) -> tuple[Counter[str], Counter[str]]:
    """Requests served by variant, and shadow mirrors by outcome, from the admin port's ``/metrics``."""
    with urllib.request.urlopen(f"http://{HOST}:{admin_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    requests: Counter[str] = Counter()
    mirrors: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == PREFIX + "requests_total":
                requests[sample.labels.get("variant", "")] += int(sample.value)
            elif sample.name == PREFIX + "shadow_requests_total":
                mirrors[sample.labels.get("outcome", "")] += int(sample.value)
    return requests, mirrors


def _settled(admin_port: int) -> tuple[Counter[str], Counter[str]]:
    """:func:`_scrape` once two reads in a row agree: the last mirrors finished and were counted."""
    last = _scrape(admin_port)
    deadline = time.monotonic() + _SETTLE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(_SETTLE_POLL)
        current = _scrape(admin_port)
        if current == last:
            break
        last = current
    return last


# --- running ------------------------------------------------------------------------------------------


@dataclass
class Run:
    """Every wrk run of each mode (its rounds in order), and each mode's counters summed over its rounds."""

    results: dict[str, list[RunResult]]
    requests: dict[str, Counter[str]]  # mode -> variant -> requests served
    mirrors: Counter[str] = field(default_factory=Counter)  # the shadow's mirrors by outcome

    def rounds(self, mode: str, connections: int) -> list[RunResult]:
        return [r for r in self.results[mode] if r.connections == connections]


def run(
    duration: float,
    warmup: float,
    rounds: int,
    settings: Mapping[str, str],
    *,
    challenger_idle: bool = False,
    split_shared: bool = True,
) -> Run:
    """Start the upstream and the challenger, then a fresh sidecar per mode and round, measured one at a time."""
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found on PATH; `make apt-bench` installs it")
    upstream_port, challenger_port = _free_port(), _free_port()
    out = Run({mode: [] for mode in MODES}, {mode: Counter() for mode in MODES})
    with tempfile.TemporaryDirectory(prefix="sidecar-experiment-bench-") as name, contextlib.ExitStack() as stack:
        tmp = Path(name)
        script = _write_wrk_script(tmp)
        upstreams = []
        # The split's treatment is a second server of the upstream's nginx, on a port of its own: one
        # worker serves both arms, as it serves all the traffic without an experiment, so the split's
        # figure is the proxy's cost of splitting (a second pool, the arm's hash). A second nginx worker
        # would compete for the same two cores as the proxy and wrk, which a treatment on cores of its
        # own does not: the serving process then woke 1.2-1.4 times a request instead of 0.65-0.7, and
        # --split-own-nginx measures that.
        # The shadow's challenger is an nginx of its own, so the mirrors never queue behind control's requests.
        treatment_port = _free_port()
        servers = {
            "upstream": (upstream_port, treatment_port) if split_shared else (upstream_port,),
            "challenger": (challenger_port,),
        }
        for which, ports in servers.items():
            block = "\n".join(_UPSTREAM_SERVER.format(host=HOST, port=port, response=RESPONSE_BODY) for port in ports)
            upstreams.append(stack.enter_context(_nginx(tmp, which, block, ports[0])))
        challengers = {"split": treatment_port if split_shared else challenger_port, "shadow": challenger_port}
        paths: dict[str, Path] = {}
        for mode in MODES[1:]:
            paths[mode] = tmp / f"experiment-{mode}.yaml"
            paths[mode].write_text(definition(mode, f"http://{HOST}:{challengers[mode]}"))
        for index in range(rounds):
            # none, split, shadow, then the other way round: a load that drifts through
            # the run weighs on every mode alike.
            for mode in MODES if index % 2 == 0 else MODES[::-1]:
                admin_port, port = _free_port(), _free_port()
                env = {**settings, "SIDECAR_ADMIN_PORT": str(admin_port)}
                if mode in paths:
                    env["SIDECAR_EXPERIMENT_PATH"] = str(paths[mode])
                # A fresh sidecar each time: no idle sidecar competes for the cores, and
                # the shadow's backlog from one round is drained before the next target runs.
                # A stand-in for a challenger on cores of its own, in shadow mode only (in split mode it serves
                # clients): its work runs only when nothing else wants a core.
                idle = challenger_idle and mode == "shadow"
                policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
                os.sched_setscheduler(upstreams[-1], policy, os.sched_param(0))
                with _sidecar(tmp, upstream_port, port, env) as pid:
                    out.results[mode] += _measure(mode, port, pid, (*upstreams, pid), script, duration, warmup)
                    requests, mirrors = _settled(admin_port)
                out.requests[mode].update(requests)
                out.mirrors.update(mirrors)
    return out


# --- the figures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """One mode at one load, each figure the median over the rounds."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    errors: int  # summed over the rounds
    other_cpu_cores: float  # the highest of the rounds


def figures(results: Sequence[RunResult]) -> Figures:
    """The median over the rounds of ``results`` (one mode, one load)."""
    return Figures(
        requests_per_second=statistics.median(r.requests_per_second for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        cpu_us_per_request=statistics.median(r.cpu_us_per_request for r in results),
        errors=sum(r.errors for r in results),
        other_cpu_cores=max(r.other_cpu_cores for r in results),
    )


def targets(run: Run) -> list[tuple[str, float, bool]]:
    """Each target of issue 17: what, the ratio to ``none`` (medians over the rounds), whether it is met."""
    none = figures(run.rounds("none", THROUGHPUT_CONNECTIONS))
    split = figures(run.rounds("split", THROUGHPUT_CONNECTIONS))
    shadow = figures(run.rounds("shadow", THROUGHPUT_CONNECTIONS))
    ratios = [
        (f"split/none CPU per request at {THROUGHPUT_CONNECTIONS} connections",
         split.cpu_us_per_request / none.cpu_us_per_request),
        (f"shadow/none p50 at {THROUGHPUT_CONNECTIONS} connections", shadow.p50_ms / none.p50_ms),
        (f"shadow/none p99 at {THROUGHPUT_CONNECTIONS} connections", shadow.p99_ms / none.p99_ms),
    ]  # fmt: skip
    return [(what, ratio, ratio <= MAX_RATIO) for what, ratio in ratios]


def _per_round(run: Run) -> list[str]:
    """Each round's ratios to the same round's ``none``, so the spread behind the medians shows."""
    lines = []
    none, split, shadow = (run.rounds(mode, THROUGHPUT_CONNECTIONS) for mode in MODES)
    for index, (a, b, c) in enumerate(zip(none, split, shadow, strict=True), start=1):
        lines.append(
            f"  round {index}: split/none CPU {b.cpu_us_per_request / a.cpu_us_per_request:.3f};"
            f" shadow/none p50 {c.p50_ms / a.p50_ms:.3f}, p99 {c.p99_ms / a.p99_ms:.3f};"
            f" shadow/none CPU {c.cpu_us_per_request / a.cpu_us_per_request:.3f}"
        )
    return lines


def _mirrors(run: Run) -> list[str]:
    """What became of the shadow's mirrors, against the requests the shadow sidecar served."""
    served = sum(run.requests["shadow"].values())
    counted = sum(run.mirrors.values())
    reached = run.mirrors["sent"] + run.mirrors["error"] + run.mirrors["timeout"]
    dropped = {k: v for k, v in sorted(run.mirrors.items()) if k.startswith("dropped")}
    share = reached / served if served else 0.0
    lines = [
        f"shadow mirrors (mlsidecar_shadow_requests_total, every round and warm-up): {served} requests served,"
        f" {reached} mirrors sent to the challenger ({share:.1%}: {run.mirrors['sent']} answered,"
        f" {run.mirrors['error']} error, {run.mirrors['timeout']} timeout), {sum(dropped.values())} dropped"
        f" ({', '.join(f'{k} {v}' for k, v in dropped.items()) or 'none'}), {served - counted} not counted",
    ]
    if reached == 0:
        lines.append(
            "WARNING: no mirror reached the challenger: the shadow verdicts measure a sidecar that did not mirror."
        )
    elif share < 0.99:
        lines.append(f"NOTE: only {share:.1%} of the requests were mirrored; the shadow verdicts hold for that share.")
    return lines


def report(run: Run, settings: Mapping[str, str]) -> str:
    shown = " ".join(f"{k}={v}" for k, v in sorted(settings.items())) or "their defaults"
    lines = [
        f"sidecar settings: {shown}",
        f"{'mode':<7} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10} {'errors':>6}"
        f" {'other CPU':>9}   (medians over the rounds; other CPU: the highest round)",
    ]
    table = {
        (mode, c): figures(run.rounds(mode, c)) for c in (LATENCY_CONNECTIONS, THROUGHPUT_CONNECTIONS) for mode in MODES
    }
    for (mode, connections), f in table.items():
        lines.append(
            f"{mode:<7} {connections:>5} {f.requests_per_second:>9.0f} {f.p50_ms:>8.3f} {f.p99_ms:>8.3f}"
            f" {f.cpu_us_per_request:>10.1f} {f.errors:>6} {f.other_cpu_cores:>9.2f}"
        )
    lines += ["(CPU us/req is all of a sidecar's processes: the proxy, the fork server, the monitoring process)", ""]
    lines.append(f"targets (issue 17), each against none in the same run, at most {MAX_RATIO:g}:")
    lines += [f"  {what}: {ratio:.3f}  ({'met' if met else 'MISSED'})" for what, ratio, met in targets(run)]
    none_lo, split_lo, shadow_lo = (table[mode, LATENCY_CONNECTIONS] for mode in MODES)
    none_hi, split_hi, shadow_hi = (table[mode, THROUGHPUT_CONNECTIONS] for mode in MODES)
    lines += [
        f"ratios with {NO_TARGET}:",
        f"  split/none p50 and p99 at {THROUGHPUT_CONNECTIONS} connections: {split_hi.p50_ms / none_hi.p50_ms:.3f},"
        f" {split_hi.p99_ms / none_hi.p99_ms:.3f}",
        f"  shadow/none CPU per request at {THROUGHPUT_CONNECTIONS} connections (the mirrors included):"
        f" {shadow_hi.cpu_us_per_request / none_hi.cpu_us_per_request:.3f}",
        f"  p50 and p99 at {LATENCY_CONNECTIONS} connection: split/none {split_lo.p50_ms / none_lo.p50_ms:.3f},"
        f" {split_lo.p99_ms / none_lo.p99_ms:.3f}; shadow/none {shadow_lo.p50_ms / none_lo.p50_ms:.3f},"
        f" {shadow_lo.p99_ms / none_lo.p99_ms:.3f}",
        "each round, at 32 connections:",
        *_per_round(run),
        "",
        "split arms (mlsidecar_requests_total, every round and warm-up): "
        + ", ".join(f"{variant} {n}" for variant, n in sorted(run.requests["split"].items())),
        *_mirrors(run),
    ]
    if any(f.other_cpu_cores > OTHER_CPU_WARNING for f in table.values()):
        lines.append(f"WARNING: other processes used over {OTHER_CPU_WARNING:g} cores in some runs; rerun when quiet.")
    if any(f.errors for f in table.values()):
        lines.append("WARNING: some runs had socket errors or non-2xx answers; their numbers are suspect.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.experiment_overhead", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per sidecar (default 2; 0: none)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of none, split and shadow (default 3)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument(
        "--challenger-idle",
        action="store_true",
        help="run the challenger's nginx at SCHED_IDLE, as a stand-in for a challenger on cores of its own (by"
        " default it competes with the proxy, wrk and control for the machine's cores, and its CPU counts against"
        " shadow mode's latency)",
    )
    parser.add_argument(
        "--split-own-nginx",
        action="store_true",
        help="serve the split's treatment from a second nginx (by default a second server of the upstream's nginx,"
        " in the same worker), which then competes with the proxy, wrk and control for the machine's cores",
    )
    parser.add_argument(
        "--sidecar-env",
        action="append",
        default=[],
        metavar="SIDECAR_NAME=VALUE",
        help="a setting for all three sidecars, e.g. SIDECAR_SAMPLE_RATE=1 to measure with capture or"
        " SIDECAR_SHADOW_CONCURRENCY=16; repeatable (default: capture off, SIDECAR_SAMPLE_RATE=0 and"
        " SIDECAR_LOG_SINK=none)",
    )
    args = parser.parse_args(argv)
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    # As proxy_overhead's targets, these are for the proxy's own path: capture off unless asked for.
    settings = sidecar_settings(parser, args.sidecar_env, PROXY_ONLY)
    if "SIDECAR_EXPERIMENT_PATH" in settings:
        parser.error("--sidecar-env SIDECAR_EXPERIMENT_PATH: the benchmark writes the experiment files itself")
    result = run(
        args.duration,
        args.warmup,
        args.rounds,
        settings,
        challenger_idle=args.challenger_idle,
        split_shared=not args.split_own_nginx,
    )
    if args.challenger_idle:
        print("the challenger's nginx ran at SCHED_IDLE (--challenger-idle)")
    if args.split_own_nginx:
        print("the split's treatment had an nginx of its own (--split-own-nginx)")
    print(report(result, settings))
    if args.json is not None:
        payload = {
            "duration_seconds": args.duration,
            "rounds": args.rounds,
            "sidecar_settings": settings,
            "challenger_idle": args.challenger_idle,
            "split_own_nginx": args.split_own_nginx,
            "max_ratio": MAX_RATIO,
            "runs": {mode: [asdict(r) for r in runs] for mode, runs in result.results.items()},
            "targets": [{"what": what, "ratio": ratio, "met": met} for what, ratio, met in targets(result)],
            "split_requests_by_variant": dict(result.requests["split"]),
            "shadow_requests_served": sum(result.requests["shadow"].values()),
            "shadow_mirrors_by_outcome": dict(result.mirrors),
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
