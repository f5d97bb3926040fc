"""How much memory does the sidecar need? The RSS of its process tree under load, against the manifest's limit.

The sidecar runs as the example manifest runs it (``deploy/kubernetes/deployment.yaml``):
its default mode, with monitoring in a process of its own
(``SIDECAR_MONITORING_PLANE=process``), the default queue sizes and byte bounds,
capture at rate 1 and the prediction log in a file sink, in front of
``proxy_overhead``'s nginx upstream. wrk drives it at 32 connections, one fresh
sidecar per payload:

- ``small``: ``proxy_overhead``'s one-row KServe V1 body (about 40 bytes);
- ``rows``: a KServe V1 batch of about 3,000 such rows in a 64 KiB body, each a
  row for the sinks, the monitors and the store;
- ``blob``: one row whose only feature is a 64 KiB base64 string, as an image
  model receives.

At 64 KiB a body the monitoring process falls behind, so the capture queue fills
to its byte bound (``SIDECAR_CAPTURE_QUEUE_MAX_BYTES``, 32 MiB) and the rest is
dropped and counted (``queue_full``): the worst case the bounds are there for.

Every 100 ms a thread reads each process of the sidecar's tree (the serving
process, the fork server, the monitoring process, multiprocessing's resource
tracker): ``VmRSS`` and ``VmHWM`` from ``/proc/PID/status`` and ``Pss`` from
``/proc/PID/smaps_rollup``. The sum of RSS counts the pages the monitoring
process shares with the fork server it was forked from twice; the sum of PSS
counts them once, as the container's memory cgroup does. Per process and in
sum it prints the steady value (the median over the last third of the load),
the peak (the largest sample, from rest to the end of the drain) and ``VmHWM``
(the kernel's own peak, between samples too), then each sum as a share of the
manifest's memory limit for the ``ml-sidecar`` container.

Usage::

    python -m benchmarks.memory --duration 30
    python -m benchmarks.memory --payloads rows --json memory.json
    python -m benchmarks.memory --payloads blob --sidecar-env SIDECAR_CAPTURE_QUEUE_MAX_BYTES=8388608

Linux only (``/proc``); needs ``wrk`` and ``nginx`` (Debian: ``wrk``,
``nginx-light``). Everything runs on 127.0.0.1 on free ports and every process
started here is stopped before exit. The exit status is 0 whatever the figures:
this is a measurement.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.proxy_overhead import (
    _UPSTREAM_SERVER,
    HOST,
    OTHER_CPU_WARNING,
    REQUEST_BODY,
    RESPONSE_BODY,
    THROUGHPUT_CONNECTIONS,
    _children_cpu_seconds,
    _free_port,
    _machine_busy_seconds,
    _nginx,
    _sidecar,
    _tree_cpu_seconds,
    _wrk,
    parse_wrk,
    sidecar_settings,
)

__all__ = ["Figures", "Payload", "Plan", "Reading", "figures", "main", "manifest_memory", "quantity"]

MANIFEST = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes" / "deployment.yaml"
CONTAINER = "ml-sidecar"
LARGE_BYTES = 64 << 10
SAMPLE_SECONDS = 0.1
MIB = 1 << 20
SUM = "sum"
_PATH = "/v1/models/iris:predict"


# --- the payloads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    """A request body wrk sends over and over."""

    name: str
    body: str


def payloads(large_bytes: int) -> dict[str, Payload]:
    """The small body, and the two shapes of a large one, each at most ``large_bytes``."""
    row = json.dumps(json.loads(REQUEST_BODY)["instances"][0])
    # '{"instances": [' + rows joined by ', ' + ']}'
    count = max(1, (large_bytes - 17) // (len(row) + 2))
    rows = '{"instances": [' + ", ".join([row] * count) + "]}"
    # Seeded, so that every run sends the same bytes; random, so that nothing along the way compresses them.
    blob = base64.b64encode(random.Random(0).randbytes((large_bytes - 40) * 3 // 4)).decode()
    image = json.dumps({"instances": [{"image": {"b64": blob}}]})
    return {
        "small": Payload("small", REQUEST_BODY),
        "rows": Payload("rows", rows),
        "blob": Payload("blob", image),
    }


def _wrk_script(directory: Path, payload: Payload) -> Path:
    # Static fields only, so that wrk builds the request once (as proxy_overhead's script does).
    script = directory / f"post-{payload.name}.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = [==[{payload.body}]==]\nwrk.headers["Content-Type"] = "application/json"\n'
    )
    return script


# --- reading /proc --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """The memory of one role's processes at one instant, in bytes."""

    rss: int
    hwm: int
    pss: int


@dataclass(frozen=True)
class Sample:
    """Every role's reading at one instant; ``seconds`` since the sampler was made."""

    seconds: float
    roles: dict[str, Reading]


def _kib_fields(path: Path, names: Sequence[str]) -> dict[str, int]:
    """``Name:   123 kB`` lines of a /proc file, in bytes."""
    out = {}
    for line in path.read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in names:
            out[name] = int(rest.split()[0]) * 1024
    return out


def _read(pid: int) -> Reading:
    status = _kib_fields(Path(f"/proc/{pid}/status"), ("VmRSS", "VmHWM"))
    rollup = _kib_fields(Path(f"/proc/{pid}/smaps_rollup"), ("Pss",))
    return Reading(status["VmRSS"], status["VmHWM"], rollup["Pss"])


def _child_pids(pid: int) -> list[int]:
    # Each thread lists the children it forked, so read every thread's list.
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            children += [int(child) for child in (task / "children").read_text().split()]
    return children


def _role(pid: int, parent_role: str) -> str:
    if parent_role == "fork server":
        return "monitoring"  # forked from the fork server: its cmdline is the fork server's
    command = Path(f"/proc/{pid}/cmdline").read_bytes()
    if b"multiprocessing.forkserver" in command:
        return "fork server"
    if b"multiprocessing.resource_tracker" in command:
        return "resource tracker"
    return "other"


class Sampler(threading.Thread):
    """Reads the memory of a process and its descendants, by role, every ``interval`` seconds until stopped.

    Usage::

        with Sampler(pid, 0.1) as sampler:
            ...  # the load
        peak = max(sample.roles["serving"].rss for sample in sampler.samples)
    """

    def __init__(self, root: int, interval: float) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        self.root = root
        self.interval = interval
        self.started = time.monotonic()
        self.samples: list[Sample] = []
        self._done = threading.Event()
        self._roles: dict[int, str] = {root: "serving"}  # a pid's role never changes while it lives

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self.join()

    def now(self) -> float:
        return time.monotonic() - self.started

    def run(self) -> None:
        while True:
            self.samples.append(Sample(self.now(), self.read()))
            if self._done.wait(self.interval):
                return

    def read(self) -> dict[str, Reading]:
        """Every live process of the tree, its readings summed per role."""
        roles: dict[str, Reading] = {}
        pending = [self.root]
        while pending:
            pid = pending.pop()
            try:
                role = self._roles.get(pid)
                if role is None:
                    role = self._roles[pid] = _role(pid, self._parent_role(pid))
                reading = _read(pid)
                pending += _child_pids(pid)
            except (OSError, KeyError):
                continue  # it ended between the listing and the read (a restart, the shutdown)
            seen = roles.get(role)
            roles[role] = reading if seen is None else _add(seen, reading)
        return roles

    def _parent_role(self, pid: int) -> str:
        stat = Path(f"/proc/{pid}/stat").read_text()
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        return self._roles.get(parent, "other")


def _add(a: Reading, b: Reading) -> Reading:
    return Reading(a.rss + b.rss, a.hwm + b.hwm, a.pss + b.pss)


# --- the figures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """One role's memory over a phase, in MiB."""

    rss_steady: float  # the median over the last third of the load
    rss_peak: float  # the largest sample, from rest to the end of the drain
    hwm: float  # VmHWM at the end: the kernel's peak RSS since the process started
    pss_steady: float
    pss_peak: float


def figures(samples: Sequence[Sample], load_start: float, load_end: float) -> dict[str, Figures]:
    """Each role's figures, and the sum's (the sum of each sample, not the sum of the roles' peaks)."""
    if not samples:
        return {}
    steady_from = load_start + (load_end - load_start) * 2 / 3
    totals = [Sample(s.seconds, {**s.roles, SUM: _total(s.roles.values())}) for s in samples]
    roles = sorted({role for s in totals for role in s.roles}, key=_ROLES.index)
    out = {}
    for role in roles:
        every = [(s.seconds, s.roles[role]) for s in totals if role in s.roles]
        steady = [r for seconds, r in every if steady_from <= seconds <= load_end] or [every[-1][1]]
        out[role] = Figures(
            rss_steady=statistics.median(r.rss for r in steady) / MIB,
            rss_peak=max(r.rss for _, r in every) / MIB,
            hwm=every[-1][1].hwm / MIB,
            pss_steady=statistics.median(r.pss for r in steady) / MIB,
            pss_peak=max(r.pss for _, r in every) / MIB,
        )
    return out


def _total(readings: Iterable[Reading]) -> Reading:
    total = Reading(0, 0, 0)
    for reading in readings:
        total = _add(total, reading)
    return total


# Every role a process can have (see _role), in the order the report lists them.
_ROLES = ("serving", "fork server", "monitoring", "resource tracker", "other", SUM)


# --- the manifest ---------------------------------------------------------------------------------

_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_FACTORS: dict[str | None, int] = {
    None: 1,
    **{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40},
    **{"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12},
}


def quantity(text: str) -> int:
    """A Kubernetes memory quantity in bytes: ``256Mi`` is 268435456."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise ValueError(f"not a memory quantity: {text!r}")
    return round(float(match.group(1)) * _FACTORS[match.group(2)])


def manifest_memory(path: Path = MANIFEST, container: str = CONTAINER) -> tuple[int, int]:
    """The container's memory request and limit in the manifest, in bytes."""
    for document in yaml.safe_load_all(path.read_text()):
        if not document or document.get("kind") != "Deployment":
            continue
        for spec in document["spec"]["template"]["spec"]["containers"]:
            if spec["name"] == container:
                resources = spec["resources"]
                return quantity(resources["requests"]["memory"]), quantity(resources["limits"]["memory"])
    raise ValueError(f"no container {container!r} in a Deployment of {path}")


# --- one phase ------------------------------------------------------------------------------------


@dataclass
class Phase:
    """One payload against a fresh sidecar."""

    payload: str
    body_bytes: int
    requests: int = 0
    requests_per_second: float = 0.0
    errors: int = 0
    other_cpu_cores: float = 0.0
    idle_end: float = 0.0  # seconds since sampling started, as the samples' are
    load_start: float = 0.0
    load_end: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    counts: dict[str, float] = field(default_factory=dict)  # from /metrics after the drain


def _counts(admin_port: int) -> dict[str, float]:
    """What capture did: captured, dropped by reason, log rows by outcome, store drops, restarts."""
    with urllib.request.urlopen(f"http://{HOST}:{admin_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "mlsidecar_captures_total":
                key = "captured"
            elif s.name == "mlsidecar_capture_dropped_total":
                key = f"dropped {s.labels['reason']}"
            elif s.name == "mlsidecar_log_records_total":
                key = f"log rows {s.labels['outcome']}"
            elif s.name == "mlsidecar_prediction_store_dropped_total":
                key = f"store dropped {s.labels['reason']}"
            elif s.name == "mlsidecar_monitor_restarts_total":
                key = "monitor restarts"
            else:
                continue
            counts[key] = counts.get(key, 0.0) + s.value
    return counts


def _wait_for_monitoring(sampler: Sampler, seconds: float) -> None:
    """Until the monitoring process is up: importing numpy and scipy takes a while on a cold disk."""
    deadline = time.monotonic() + seconds
    while "monitoring" not in sampler.read() and time.monotonic() < deadline:
        time.sleep(0.1)


@dataclass(frozen=True)
class Plan:
    """How long each phase lasts, and the sidecar's settings beyond the benchmark's own."""

    duration: float
    warmup: float
    drain: float
    settings: Mapping[str, str]


def run_phase(tmp: Path, upstream: tuple[int, int], payload: Payload, plan: Plan) -> Phase:
    """A fresh sidecar; idle, warm-up, load and drain, sampled throughout; then its counters."""
    upstream_port, upstream_pid = upstream
    phase = Phase(payload.name, len(payload.body.encode()))
    script = _wrk_script(tmp, payload)
    port, admin_port = _free_port(), _free_port()
    settings = {
        "SIDECAR_SAMPLE_RATE": "1",
        "SIDECAR_LOG_SINK": f"file:{tmp / f'predictions-{payload.name}.jsonl'}",
        **plan.settings,
        "SIDECAR_ADMIN_PORT": str(admin_port),
    }
    url = f"http://{HOST}:{port}{_PATH}"
    with _sidecar(tmp, upstream_port, port, settings) as pid:
        sampler = Sampler(pid, SAMPLE_SECONDS)
        _wait_for_monitoring(sampler, 60.0)
        with sampler:
            time.sleep(1.0)  # at rest, for the idle figure
            phase.idle_end = sampler.now()
            if plan.warmup > 0:
                _wrk(url, script, 2, THROUGHPUT_CONNECTIONS, plan.warmup)
            ours_before = _tree_cpu_seconds(pid) + _tree_cpu_seconds(upstream_pid) + _children_cpu_seconds()
            busy_before, phase.load_start = _machine_busy_seconds(), sampler.now()
            output = _wrk(url, script, 2, THROUGHPUT_CONNECTIONS, plan.duration)
            phase.load_end = sampler.now()
            ours = _tree_cpu_seconds(pid) + _tree_cpu_seconds(upstream_pid) + _children_cpu_seconds() - ours_before
            other = _machine_busy_seconds() - busy_before - ours
            phase.other_cpu_cores = max(0.0, other) / (phase.load_end - phase.load_start)
            # The monitoring process works through the queue it was left: its memory may peak now.
            time.sleep(plan.drain)
        phase.samples = sampler.samples
        phase.counts = _counts(admin_port)
    phase.requests, phase.requests_per_second, _, _, phase.errors = parse_wrk(output)
    print(f"  {payload.name:<6} {phase.requests_per_second:>9.0f} req/s", file=sys.stderr)
    return phase


def run(names: Sequence[str], large_bytes: int, plan: Plan) -> list[Phase]:
    """Start the upstream, measure each payload against its own sidecar, stop everything."""
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found on PATH; `make apt-bench` installs it")
    every = payloads(large_bytes)
    upstream_port = _free_port()
    with tempfile.TemporaryDirectory(prefix="sidecar-memory-bench-") as name:
        tmp = Path(name)
        block = _UPSTREAM_SERVER.format(host=HOST, port=upstream_port, response=RESPONSE_BODY)
        with _nginx(tmp, "upstream", block, upstream_port) as upstream_pid:
            upstream = (upstream_port, upstream_pid)
            return [run_phase(tmp, upstream, every[name], plan) for name in names]


# --- the report -----------------------------------------------------------------------------------


def _idle(phase: Phase) -> float:
    """The sum of PSS at rest, before the warm-up, in MiB."""
    idle = [_total(s.roles.values()).pss for s in phase.samples if s.seconds <= phase.idle_end]
    return statistics.median(idle) / MIB if idle else float("nan")


def _capture_line(counts: Mapping[str, float]) -> str:
    """What capture did with the exchanges of the warm-up, the load and the drain."""
    reasons = {key.removeprefix("dropped "): value for key, value in counts.items() if key.startswith("dropped ")}
    dropped = ", ".join(f"{reason} {value:,.0f}" for reason, value in reasons.items())
    return (
        f"captured {counts.get('captured', 0):,.0f}, dropped {dropped}; log rows written"
        f" {counts.get('log rows written', 0):,.0f}, dropped {counts.get('log rows dropped', 0):,.0f}; store dropped"
        f" {counts.get('store dropped buffer_full', 0):,.0f}; monitor restarts {counts.get('monitor restarts', 0):.0f}"
    )


def report(phases: Sequence[Phase], request: int, limit: int, settings: Mapping[str, str]) -> str:
    header = f"{'process':<17} {'RSS steady':>10} {'RSS peak':>9} {'VmHWM':>8} {'PSS steady':>10} {'PSS peak':>9}"
    out = [
        f"the {CONTAINER} container in {MANIFEST.relative_to(MANIFEST.parents[2])}: request"
        f" {request / MIB:g} MiB, limit {limit / MIB:g} MiB",
        f"wrk: {THROUGHPUT_CONNECTIONS} connections; capture rate 1; file sink; "
        + (" ".join(f"{k}={v}" for k, v in sorted(settings.items())) or "default queue sizes")
        + "; MiB below",
    ]
    for phase in phases:
        out += [
            "",
            f"{phase.payload}: {phase.body_bytes:,} B bodies, {phase.requests:,} requests at"
            f" {phase.requests_per_second:,.0f} req/s, {phase.errors} errors; other CPU {phase.other_cpu_cores:.2f}"
            f" cores; at rest before the load {_idle(phase):.1f} MiB PSS in sum",
            f"  warm-up, load and drain: {_capture_line(phase.counts)}",
            "  " + header,
        ]
        every = figures(phase.samples, phase.load_start, phase.load_end)
        for role, f in every.items():
            out.append(
                f"  {role:<17} {f.rss_steady:>10.1f} {f.rss_peak:>9.1f} {f.hwm:>8.1f} {f.pss_steady:>10.1f}"
                f" {f.pss_peak:>9.1f}"
            )
        share = {name: value * MIB / limit for name, value in asdict(every[SUM]).items()}
        out.append(
            f"  sum / limit: RSS steady {share['rss_steady']:.2f}, peak {share['rss_peak']:.2f}, VmHWM"
            f" {share['hwm']:.2f}; PSS steady {share['pss_steady']:.2f}, peak {share['pss_peak']:.2f}"
        )
    out += [
        "",
        "(The sum of RSS counts twice the pages the monitoring process shares with the fork server it was forked",
        " from; the sum of PSS counts them once, as the container's memory cgroup does. The cgroup also charges",
        " the page cache of the prediction log and socket buffers, which the kernel reclaims or bounds.)",
    ]
    if any(phase.other_cpu_cores > OTHER_CPU_WARNING for phase in phases):
        out.append(f"WARNING: other processes used over {OTHER_CPU_WARNING:g} cores during some loads.")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per payload (default 30)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per payload (default 2; 0: none)")
    parser.add_argument("--drain", type=float, default=5.0, help="seconds sampled after the load (default 5)")
    parser.add_argument(
        "--payloads",
        default="small,rows,blob",
        help="which bodies, comma-separated: small, rows, blob (default all three)",
    )
    parser.add_argument(
        "--large-bytes", type=int, default=LARGE_BYTES, help=f"size of the large bodies (default {LARGE_BYTES})"
    )
    parser.add_argument(
        "--sidecar-env",
        action="append",
        default=[],
        metavar="SIDECAR_NAME=VALUE",
        help="a setting for the sidecar, e.g. SIDECAR_CAPTURE_QUEUE_MAX_BYTES=8388608 to see what a smaller bound"
        " saves; repeatable (default: capture rate 1, a file sink, every other setting at its default)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every sample and figure as JSON")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.payloads.split(",") if name.strip()]
    if not names or set(names) - {"small", "rows", "blob"}:
        parser.error("--payloads takes small, rows and blob, comma-separated")
    if args.duration < 3 or args.drain < 0 or args.large_bytes < 1024:
        parser.error("--duration must be at least 3 s, --drain not negative, --large-bytes at least 1024")
    settings = sidecar_settings(parser, args.sidecar_env, {})
    request, limit = manifest_memory()
    phases = run(names, args.large_bytes, Plan(args.duration, args.warmup, args.drain, settings))
    print(report(phases, request, limit, settings))
    if args.json is not None:
        payload = {
            "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "manifest": {"request_bytes": request, "limit_bytes": limit},
            "phases": [
                {
                    **asdict(p),
                    "figures": {r: asdict(f) for r, f in figures(p.samples, p.load_start, p.load_end).items()},
                }
                for p in phases
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
