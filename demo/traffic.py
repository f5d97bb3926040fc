"""Synthetic client traffic for the demo, sent through the sidecar's proxy port.

Rows come from the training distribution, except that income drifts down by
``drift_sd_per_minute`` standard deviations a minute (up to ``MAX_DRIFT_SD``),
so the sidecar's drift monitors have something to find. Requests go out at a
steady, bounded rate with a bounded number in flight, through
:class:`~sidecar.upstream.UpstreamClient`, the project's one HTTP client.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from time import perf_counter

import numpy as np
import orjson

from demo.model_server import MODEL_NAME, FloatArray, sample_features
from sidecar.exceptions import UpstreamError
from sidecar.upstream import UpstreamClient

__all__ = ["PREDICT_PATH", "TrafficGenerator", "TrafficStats", "instance"]

PREDICT_PATH = f"/v1/models/{MODEL_NAME}:predict"
MAX_DRIFT_SD = 2.0
_HEADERS = [("content-type", "application/json")]


def instance(row: FloatArray) -> dict[str, float]:
    """One row as a KServe V1 instance keyed by feature name, rounded as a real client would send it."""
    income, debt_ratio, age, credit_lines, late_payments = row.tolist()
    return {
        "income": round(income, 1),
        "debt_ratio": round(debt_ratio, 3),
        "age": int(age),
        "credit_lines": int(credit_lines),
        "late_payments": int(late_payments),
    }


@dataclass
class TrafficStats:
    """Running totals, plus latencies since the last :meth:`summary` (so memory stays bounded)."""

    requests: int = 0
    rows: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def summary(self, elapsed: float, drift: float) -> str:
        """One line for the console; starts a new latency window."""
        line = f"traffic: {elapsed:5.0f}s  {self.requests} requests ({self.requests / max(elapsed, 1e-9):.1f}/s)"
        line += f"  {self.rows} rows  {self.errors} errors"
        if self.latencies:
            p50, p95 = np.percentile(self.latencies, [50, 95]) * 1000
            line += f"  latency p50 {p50:.1f} ms p95 {p95:.1f} ms"
        self.latencies.clear()
        return line + f"  income drift {drift:+.2f} sd"


class TrafficGenerator:
    """Send predict requests of 1-4 rows at ``rate`` per second, at most ``concurrency`` at once.

    Usage::

        client = UpstreamClient("http://127.0.0.1:8000", timeout=10, connect_timeout=2, max_connections=8)
        await client.open()
        traffic = TrafficGenerator(client, rate=30, concurrency=8)
        await traffic.run(stop)  # until the asyncio.Event stop is set
        print(traffic.stats.summary(traffic.elapsed, traffic.drift))
    """

    def __init__(
        self,
        client: UpstreamClient,
        *,
        rate: float = 30.0,
        concurrency: int = 8,
        drift_sd_per_minute: float = 0.1,
        seed: int = 1,
    ) -> None:
        self._client = client
        self._interval = 1.0 / rate
        self._concurrency = concurrency
        self._drift_per_second = drift_sd_per_minute / 60.0
        self._rng = np.random.default_rng(seed)
        self._started = perf_counter()
        self.stats = TrafficStats()

    @property
    def elapsed(self) -> float:
        return perf_counter() - self._started

    @property
    def drift(self) -> float:
        """The current shift of the income mean, in standard deviations (negative: poorer applicants)."""
        return -min(self.elapsed * self._drift_per_second, MAX_DRIFT_SD)

    async def run(self, stop: asyncio.Event) -> None:
        """Send requests until ``stop`` is set, then wait for those in flight."""
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self._concurrency)
        self._started = perf_counter()
        next_at = loop.time()
        async with asyncio.TaskGroup() as requests:
            while not stop.is_set():
                await slots.acquire()
                requests.create_task(self._send(slots))
                # Never schedule in the past: after a slow spell the rate
                # resumes instead of bursting to catch up.
                next_at = max(next_at + self._interval, loop.time())
                await asyncio.sleep(next_at - loop.time())

    async def _send(self, slots: asyncio.Semaphore) -> None:
        try:
            rows = sample_features(self._rng, int(self._rng.integers(1, 5)), income_shift=self.drift)
            body = orjson.dumps({"instances": [instance(row) for row in rows]})
            start = perf_counter()
            try:
                async with self._client.request("POST", PREDICT_PATH, _HEADERS, body) as response:
                    await response.read()
                    ok = response.status == 200
            except UpstreamError:
                # The sidecar is down or restarting; count it and keep the rhythm.
                ok = False
            self.stats.requests += 1
            self.stats.rows += len(rows)
            if ok:
                self.stats.latencies.append(perf_counter() - start)
            else:
                self.stats.errors += 1
        finally:
            slots.release()
