"""The demo's summary line: traffic, drift, data quality and alerts in one short line every few seconds.

Traffic figures (requests, rate, latency) are the traffic generator's own,
measured as the client sees them; the rest is read from the sidecar's admin
API, as a dashboard or a person with curl would read it::

      5s calm    151 req 30.2/s 0 errors p50 1.1ms p99 2.4ms | drift: none (top debt_ratio PSI 0.03) | quality: 0
         | alerts: none
     55s shifted 1653 req 30.0/s 0 errors p50 1.2ms p99 5.8ms | drift: 2/6 features (top income PSI 0.73)
         | quality: 213 (top age out_of_range) | firing: data_quality_major; 2 pending

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

__all__ = ["Status", "StatusReader", "alerts_part", "drift_part", "quality_part", "summary_line"]

ENDPOINTS = ("/api/v1/drift", "/api/v1/quality", "/api/v1/alerts")


@dataclass(frozen=True)
class Status:
    """The three admin answers a summary line reads, as parsed JSON."""

    drift: dict[str, Any]
    quality: dict[str, Any]
    alerts: dict[str, Any]


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


def summary_line(elapsed: float, phase: str, stats: TrafficStats, status: Status | None) -> str:
    """One line for the terminal; takes the latencies gathered since the last line."""
    line = f"{elapsed:4.0f}s {phase:<7} {stats.requests} req {stats.requests / max(elapsed, 1e-9):.1f}/s"
    line += f" {stats.errors} errors"
    if (latency := stats.take_latencies()) is not None:
        line += f" p50 {latency[0] * 1000:.1f}ms p99 {latency[1] * 1000:.1f}ms"
    if status is None:
        return line + " | sidecar unreachable"
    parts = (drift_part(status.drift), quality_part(status.quality), alerts_part(status.alerts))
    return " | ".join((line, *parts))
