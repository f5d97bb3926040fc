"""The demo's summary line: traffic, drift, data quality, alerts and the experiment in one line every few seconds.

Traffic figures (requests, rate, latency) are the traffic generator's own,
measured as the client sees them; the rest is read from the sidecar's admin
API, as a dashboard or a person with curl would read it::

     15s calm    458 req 30.0/s 0 errors p50 0.8ms p99 3.9ms | drift: none (top income PSI 0.01) | quality: 0
         | alerts: none | experiment: keep_running (units v1 147, v2 135; conversion lift +87% [-102%, +276%] p 0.64)
     56s shifted 1663 req 29.9/s 0 errors p50 1.0ms p99 4.9ms | drift: 3/6 features (top income PSI 0.73)
         | quality: 213 (top age out_of_range) | firing: data_quality_major; 2 pending
         | experiment: roll_out v2 (units v1 532, v2 540; conversion lift +100% [+44%, +150%] p 1.2e-11)

(each one line on the terminal). Reading the API never stops the demo: a failed
read shows as ``sidecar unreachable`` in the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from demo.traffic import TrafficStats
from sidecar.exceptions import UpstreamError
from sidecar.upstream.client import UpstreamClient

__all__ = [
    "Status",
    "StatusReader",
    "alerts_part",
    "drift_part",
    "experiment_part",
    "quality_part",
    "summary_line",
]

ENDPOINTS = ("/api/v1/drift", "/api/v1/quality", "/api/v1/alerts", "/api/v1/experiments")


@dataclass(frozen=True)
class Status:
    """The four admin answers a summary line reads, as parsed JSON."""

    drift: dict[str, Any]
    quality: dict[str, Any]
    alerts: dict[str, Any]
    experiments: dict[str, Any]


class StatusReader:
    """Reads :class:`Status` from the admin port.

    Usage::

        reader = StatusReader(admin_client)  # an opened UpstreamClient on the admin port
        status = await reader.read()  # None when the sidecar did not answer
    """

    def __init__(self, client: UpstreamClient) -> None:
        self._client = client

    async def read(self) -> Status | None:
        answers = []
        try:
            for path in ENDPOINTS:
                async with self._client.request("GET", path, []) as response:
                    body = await response.read()
                if response.status != 200:
                    return None
                answers.append(orjson.loads(body))
        except (UpstreamError, orjson.JSONDecodeError):
            return None
        return Status(*answers)


def _psi(feature: dict[str, Any]) -> float | None:
    return next((m["score"] for m in feature["methods"] if m["method"] == "psi"), None)


def drift_part(drift: dict[str, Any]) -> str:
    """``drift: 2/6 features (top income PSI 0.93)``, ``drift: none (...)``, or ``waiting`` before data.

    The top feature is the drifted one with the largest PSI, or, when none
    drifted, the feature with the largest PSI.
    """
    report = drift.get("drift")
    features = [] if report is None else report["features"]
    scored = [(psi, f) for f in features if (psi := _psi(f)) is not None]
    if not scored:
        return "drift: waiting for data"
    drifted = [(psi, f) for psi, f in scored if f["verdict"] == "drift"]
    psi, top = max(drifted or scored, key=lambda pair: pair[0])
    verdict = f"{len(drifted)}/{len(features)} features" if drifted else "none"
    return f"drift: {verdict} (top {top['name']} PSI {psi:.2f})"


def quality_part(quality: dict[str, Any]) -> str:
    """``quality: 52 (top age out_of_range)``: violations since start-up, the most frequent kind named."""
    counts = [v for v in quality["quality"]["violations"] if v["count"] > 0]
    if not counts:
        return "quality: 0"
    top = max(counts, key=lambda v: v["count"])
    return f"quality: {sum(v['count'] for v in counts)} (top {top['feature']} {top['check']})"


def alerts_part(alerts: dict[str, Any]) -> str:
    """``firing: data_quality_major, feature_drift; 1 pending``, ``alerts: 2 pending`` or ``alerts: none``."""
    firing = sorted(a["alert"] for a in alerts["active"] if a["state"] == "firing")
    pending = sum(a["state"] == "pending" for a in alerts["active"])
    waiting = f"{pending} pending" if pending else ""
    if firing:
        return "firing: " + ", ".join(firing) + (f"; {waiting}" if waiting else "")
    return "alerts: " + (waiting or "none")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.0%}"


def experiment_part(experiments: dict[str, Any]) -> str:
    """``experiment: roll_out v2 (units v1 532, v2 540; conversion lift +100% [+44%, +150%] p 1.2e-11)``: the
    decision (with the variant it names), the analysis units per arm, and the first primary metric's relative lift
    in the first treatment with its interval and adjusted p-value, which the decision reads; else the experiment's
    status (``pending`` before its first analysis), or ``none`` without one.
    """
    if not experiments["experiments"]:
        return "experiment: none"
    analysis = experiments["experiments"][0]["analysis"]
    if analysis is None:
        return f"experiment: {experiments['experiments'][0]['status']}"
    decision = analysis["decision"]
    verdict = " ".join([decision["decision"], *decision["variants"]])
    units = ", ".join(f"{arm['name']} {arm['captured_units']}" for arm in analysis["arms"])
    primary = next(m for m in analysis["metrics"] if m["role"] == "primary")
    effect = primary["effects"][0]
    lift = _percent(effect["lift"])
    if effect["lift"] is not None:
        pvalue = effect["pvalue_adjusted"]
        lift += f" [{_percent(effect['lift_ci_low'])}, {_percent(effect['lift_ci_high'])}]"
        lift += " p " + ("n/a" if pvalue is None else f"{pvalue:.2g}")
    return f"experiment: {verdict} (units {units}; {primary['name']} lift {lift})"


def summary_line(elapsed: float, phase: str, stats: TrafficStats, status: Status | None) -> str:
    """One line for the terminal; takes the latencies gathered since the last line."""
    line = f"{elapsed:4.0f}s {phase:<7} {stats.requests} req {stats.requests / max(elapsed, 1e-9):.1f}/s"
    line += f" {stats.errors} errors"
    if (latency := stats.take_latencies()) is not None:
        line += f" p50 {latency[0] * 1000:.1f}ms p99 {latency[1] * 1000:.1f}ms"
    if status is None:
        return line + " | sidecar unreachable"
    parts = (
        drift_part(status.drift),
        quality_part(status.quality),
        alerts_part(status.alerts),
        experiment_part(status.experiments),
    )
    return " | ".join((line, *parts))
