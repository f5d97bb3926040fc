"""Synthetic client traffic for the demo, sent through the sidecar's proxy port.

Rows come from the training distribution, except that income drifts down by
``drift_sd_per_minute`` standard deviations a minute (up to ``MAX_DRIFT_SD``),
so the sidecar's drift monitors have something to find. Requests go out at a
steady, bounded rate with a bounded number in flight, through
:class:`~sidecar.upstream.client.UpstreamClient`, the project's one HTTP client.

:class:`LabelFeedback` plays the business that learns, later, whether each
applicant defaulted: for a share of the rows it draws the outcome from the
hidden truth and posts it to ``/api/v1/labels`` some seconds after the
prediction (days, in real life; seconds, so a demo shows performance).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from dataclasses import dataclass, field
from time import perf_counter

import numpy as np
import orjson

from demo.model_server import MODEL_NAME, FloatArray, default_probability, sample_features
from sidecar.exceptions import UpstreamError
from sidecar.upstream.client import UpstreamClient

__all__ = ["PREDICT_PATH", "LabelFeedback", "TrafficGenerator", "TrafficStats", "instance"]

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
    labels_posted: int = 0
    labels_joined: int = 0
    latencies: list[float] = field(default_factory=list)

    def summary(self, elapsed: float, drift: float) -> str:
        """One line for the console; starts a new latency window."""
        line = f"traffic: {elapsed:5.0f}s  {self.requests} requests ({self.requests / max(elapsed, 1e-9):.1f}/s)"
        line += f"  {self.rows} rows  {self.errors} errors"
        if self.latencies:
            p50, p95 = np.percentile(self.latencies, [50, 95]) * 1000
            line += f"  latency p50 {p50:.1f} ms p95 {p95:.1f} ms"
        self.latencies.clear()
        line += f"  income drift {drift:+.2f} sd"
        if self.labels_posted:
            line += f"  labels {self.labels_joined}/{self.labels_posted} joined"
        return line


class LabelFeedback:
    """Post the true outcome of ``share`` of the rows, ``delay`` seconds (a range) after each prediction.

    Usage::

        feedback = LabelFeedback(admin_client, token, stats)
        feedback.predicted("demo-17", rows)   # after the response came back
        await feedback.run(stop)              # posts what is due every second
    """

    def __init__(
        self,
        client: UpstreamClient,
        token: str,
        stats: TrafficStats,
        *,
        share: float = 0.6,
        delay: tuple[float, float] = (5.0, 20.0),
        seed: int = 2,
    ) -> None:
        self._client = client
        self._headers = [("content-type", "application/json"), ("authorization", f"Bearer {token}")]
        self._stats = stats
        self._share = share
        self._delay = delay
        self._rng = np.random.default_rng(seed)
        self._due: list[tuple[float, str, int, int]] = []  # a heap of (due time, request id, row, label)

    def predicted(self, request_id: str, rows: FloatArray) -> None:
        now = perf_counter()
        outcomes = self._rng.random(len(rows)) < default_probability(rows)
        for row, (defaulted, known) in enumerate(zip(outcomes, self._rng.random(len(rows)) < self._share, strict=True)):
            if known:
                due = now + float(self._rng.uniform(*self._delay))
                heapq.heappush(self._due, (due, request_id, row, int(defaulted)))

    async def run(self, stop: asyncio.Event) -> None:
        """Post due labels every second until ``stop``; a failed post is skipped, as a real job would retry."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            batch: list[dict[str, object]] = []
            while self._due and self._due[0][0] <= perf_counter() and len(batch) < 1000:
                _, request_id, row, label = heapq.heappop(self._due)
                batch.append({"request_id": request_id, "row": row, "label": label})
            if batch:
                with contextlib.suppress(UpstreamError):
                    async with self._client.request("POST", "/api/v1/labels", self._headers, orjson.dumps(batch)) as r:
                        answer = orjson.loads(await r.read())
                    self._stats.labels_posted += len(batch)
                    self._stats.labels_joined += int(answer.get("joined", 0)) if r.status == 200 else 0


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
        feedback: LabelFeedback | None = None,
    ) -> None:
        self._client = client
        self.feedback = feedback  # settable after construction: it shares this generator's stats
        self._sent = 0
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
            self._sent += 1
            request_id = f"demo-{self._sent}"
            start = perf_counter()
            try:
                headers = [*_HEADERS, ("x-request-id", request_id)]
                async with self._client.request("POST", PREDICT_PATH, headers, body) as response:
                    await response.read()
                    ok = response.status == 200
            except UpstreamError:
                # The sidecar is down or restarting; count it and keep the rhythm.
                ok = False
            self.stats.requests += 1
            self.stats.rows += len(rows)
            if ok:
                self.stats.latencies.append(perf_counter() - start)
                if self.feedback is not None:
                    self.feedback.predicted(request_id, rows)
            else:
                self.stats.errors += 1
        finally:
            slots.release()
