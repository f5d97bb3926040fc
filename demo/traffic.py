"""Synthetic client traffic for the demo, sent through the sidecar's proxy port.

Rows follow the :class:`~demo.scenario.Scenario`: drawn from the training
distribution while it is calm, from the shifted mix after. Requests go out
at a steady, bounded rate with a bounded number in flight, through
:class:`~sidecar.upstream.client.UpstreamClient`, the project's one HTTP client.
Each comes from one of a fixed population of users, named in ``x-user-id``
(the experiment's assignment key, :mod:`demo.experiment`), and its request id
ends with the user's name (``demo-42-u-17``), so the prediction log tells
whose it was.

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

from demo.experiment import USER_HEADER, USERS, Conversions
from demo.model_server import (
    CLASSES,
    EMPLOYMENT,
    FEATURES,
    MODEL_NAME,
    FloatArray,
    default_probability,
    sample_features,
)
from demo.scenario import Scenario
from sidecar.exceptions import UpstreamError
from sidecar.upstream.client import UpstreamClient

__all__ = ["PREDICT_PATH", "LabelFeedback", "TrafficGenerator", "TrafficStats", "instance"]

PREDICT_PATH = f"/v1/models/{MODEL_NAME}:predict"
_HEADERS = [("content-type", "application/json")]
_AGE = FEATURES.index("age")
_DEFAULT = CLASSES.index("default")


def instance(row: FloatArray) -> dict[str, float | str]:
    """One row as a KServe V1 instance keyed by feature name, rounded as a real client would send it."""
    income, debt_ratio, age, credit_lines, late_payments, employment = row.tolist()
    return {
        "income": round(income, 1),
        "debt_ratio": round(debt_ratio, 3),
        "age": int(age),
        "credit_lines": int(credit_lines),
        "late_payments": int(late_payments),
        "employment": EMPLOYMENT[int(employment)],
    }


@dataclass
class TrafficStats:
    """Running totals, plus the latencies since the last :meth:`take_latencies` (so memory stays bounded)."""

    requests: int = 0
    rows: int = 0
    errors: int = 0
    labels_posted: int = 0
    labels_joined: int = 0
    latencies: list[float] = field(default_factory=list)

    def take_latencies(self) -> tuple[float, float] | None:
        """p50 and p99 of the latencies seen since the last call, in seconds (None if none); starts afresh."""
        if not self.latencies:
            return None
        p50, p99 = np.percentile(self.latencies, [50, 99])
        self.latencies.clear()
        return float(p50), float(p99)


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
    """Send predict requests of 1-4 rows at ``rate`` per second, at most ``concurrency`` at once, each from one of
    ``users`` users picked at random.

    Usage::

        client = UpstreamClient("http://127.0.0.1:8000", timeout=10, connect_timeout=2, max_connections=8)
        await client.open()
        traffic = TrafficGenerator(client, Scenario(), rate=30, concurrency=8)
        await traffic.run(stop)  # until the asyncio.Event stop is set
        print(traffic.stats.requests, traffic.phase)
    """

    def __init__(
        self,
        client: UpstreamClient,
        scenario: Scenario,
        *,
        rate: float = 30.0,
        concurrency: int = 8,
        users: int = USERS,
        seed: int = 1,
        feedback: LabelFeedback | None = None,
        conversions: Conversions | None = None,
    ) -> None:
        self._client = client
        self.scenario = scenario
        self.feedback = feedback  # settable after construction: it shares this generator's stats
        self.conversions = conversions
        self._sent = 0
        self._interval = 1.0 / rate
        self._concurrency = concurrency
        self._users = users
        self._rng = np.random.default_rng(seed)
        # A stream of its own, so that the rows drawn are the same with any number of users.
        self._user_rng = np.random.default_rng([seed, users])
        self._started = perf_counter()
        self.stats = TrafficStats()

    @property
    def elapsed(self) -> float:
        return perf_counter() - self._started

    @property
    def phase(self) -> str:
        return self.scenario.phase(self.elapsed)

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

    def _rows(self) -> tuple[FloatArray, FloatArray]:
        """The applicants of one request, and the rows as sent (with the shifted form's age 0 in some)."""
        mix = self.scenario.mix(self.elapsed)
        n = int(self._rng.integers(1, 5))
        rows = sample_features(self._rng, n, income_shift=mix.income_shift, employment_shares=mix.employment_shares)
        sent = rows.copy()
        sent[self._rng.random(n) < mix.age_zero_share, _AGE] = 0.0
        return rows, sent

    async def _send(self, slots: asyncio.Semaphore) -> None:
        try:
            rows, sent = self._rows()
            body = orjson.dumps({"instances": [instance(row) for row in sent]})
            self._sent += 1
            user = f"u-{int(self._user_rng.integers(self._users))}"
            request_id = f"demo-{self._sent}-{user}"
            start = perf_counter()
            try:
                headers = [*_HEADERS, ("x-request-id", request_id), (USER_HEADER, user)]
                async with self._client.request("POST", PREDICT_PATH, headers, body) as response:
                    answer = await response.read()
                    ok = response.status == 200
            except UpstreamError:
                # The sidecar is down or restarting; count it and keep the rhythm.
                ok = False
            self.stats.requests += 1
            self.stats.rows += len(rows)
            if ok:
                self.stats.latencies.append(perf_counter() - start)
                # Outcomes depend on the applicants' real age, not on the 0 the form sent.
                if self.feedback is not None:
                    self.feedback.predicted(request_id, rows)
                if self.conversions is not None:
                    quoted = np.array(orjson.loads(answer)["predictions"], dtype=np.float64)[:, _DEFAULT]
                    self.conversions.quoted(user, rows, quoted)
            else:
                self.stats.errors += 1
        finally:
            slots.release()
