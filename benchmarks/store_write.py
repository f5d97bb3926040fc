"""Does the prediction store keep up? Predictions written and labels joined per second, SQLite beside PostgreSQL.

One :class:`~sidecar.store.PredictionStore` per backend, at its defaults
(buffer of 10,000 rows, batches of 1,000, a flush every 0.1 s), with two
segment features, in the same run:

- **write**: for ``--seconds``, a producer on the event loop adds single-row
  exchanges (3-class scores and confidence, four features of which two are
  segments) whenever the buffer has room, as the capture worker would at a
  sample rate the store cannot keep up with; the store's own background
  writer drains it. Rows written per second is what left the buffer in that
  time; none may be dropped. CPU is this process's (all threads: producer,
  writer, leadership), not the database server's;
- **labels**: labels for a random 60% of 100,000 of those predictions, plus 5%
  duplicates and 5% unknown request ids, in random order, through
  :meth:`~sidecar.store.PredictionStore.attach_labels` in batches of 1,000.

PostgreSQL is Debian's, started the way the tests start it (tests/postgres.py:
``initdb`` in a temporary directory, 127.0.0.1, SCRAM), but with ``fsync`` on,
as a deployment runs it; on the same machine, so the server's CPU is taken
from the same cores. SQLite is in WAL mode with ``synchronous=NORMAL``, as the
store runs it.

The write figures are compared with the rate at which a sidecar captures
records, measured first in the same run when wrk and nginx are installed:
``capture_overhead``'s nginx upstream and a real sidecar at sample rate 1 with
its defaults (and the prediction log off), driven by wrk at 32 connections for
``--seconds``; each request is one row, so captured exchanges per second are
records per second. Without wrk or nginx, ``--captured-rate`` stands in.

Usage::

    python -m benchmarks.store_write [--seconds 10] [--labels-over 100000] [--captured-rate 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.capture_overhead import _capture_counts
from benchmarks.label_ingest import CLASSES, COUNTRIES, SHARE_DUPLICATE, SHARE_LABELLED, SHARE_UNKNOWN, T0, batches
from benchmarks.proxy_overhead import (
    _UPSTREAM_SERVER,
    HOST,
    RESPONSE_BODY,
    _free_port,
    _nginx,
    _sidecar,
    _write_wrk_script,
    _wrk,
)
from sidecar.records import PredictionRecord
from sidecar.store import DEFAULT_BUFFER_ROWS, LabelItem, PredictionStore
from tests.postgres import run_postgres

__all__ = ["main"]

SPACING = 0.01  # seconds between predictions: a million span under three hours, well inside the TTL
CHUNK = 200  # exchanges the producer adds per turn of the loop


@dataclass(frozen=True)
class Figures:
    backend: str
    full: float  # the share of the producer's turns that found the buffer full: the store set the pace
    rows: int
    seconds: float
    cpu_seconds: float
    labels: int
    label_seconds: float
    label_cpu_seconds: float
    outcomes: Counter[str]

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds

    @property
    def labels_per_second(self) -> float:
        return self.labels / self.label_seconds


def exchanges(rng: np.random.Generator) -> Iterator[list[PredictionRecord]]:
    """Single-row exchanges, ``SPACING`` seconds apart, ids ``req-00000000`` on (as benchmarks.label_ingest's)."""
    i = 0
    while True:
        scores = rng.dirichlet((1.0, 1.0, 1.0), size=CHUNK)
        for row in scores:
            yield [
                PredictionRecord(
                    timestamp=T0 + i * SPACING,
                    request_id=f"req-{i:08d}",
                    row=0,
                    model_name="iris",
                    model_version="3",
                    variant="primary",
                    features={"country": COUNTRIES[i % 4], "device": "ios", "age": 30 + i % 50, "email": "x"},
                    prediction=CLASSES[int(np.argmax(row))],
                    confidence=float(row.max()),
                    scores=[round(float(s), 4) for s in row],
                    latency_ms=4.2,
                    status_code=200,
                    strategy="random",
                    probability=0.5,
                )
            ]
            i += 1


def label_items(count: int, rng: np.random.Generator) -> list[LabelItem]:
    """Labels for a random 60% of the first ``count`` predictions, 5% duplicates, 5% unknown ids; random order."""
    chosen = [int(i) for i in rng.permutation(count)[: int(count * SHARE_LABELLED)]]
    duplicates = [chosen[int(j)] for j in rng.integers(0, len(chosen), size=int(count * SHARE_DUPLICATE))]
    items = [LabelItem(f"req-{i:08d}", None, CLASSES[i % 3]) for i in chosen + duplicates]
    items += [LabelItem(f"unknown-{k}", None, CLASSES[0]) for k in range(int(count * SHARE_UNKNOWN))]
    return [items[int(j)] for j in rng.permutation(len(items))]


async def measure(backend: str, url: str | None, seconds: float, labels_over: int) -> Figures:
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="store-write-") as state_dir:
        store = PredictionStore(
            state_dir,
            url=url,
            model="iris",
            segment_features=("country", "device"),
            # The records are dated from T0: a clock just after keeps the TTL out of the way.
            clock=lambda: T0 + 86400.0,
        )
        await store.start()
        try:
            source = exchanges(rng)
            added = turns = full = 0
            started, cpu_started = time.perf_counter(), time.process_time()
            deadline = started + seconds
            while time.perf_counter() < deadline:
                turns += 1
                if store.counts().pending + CHUNK <= DEFAULT_BUFFER_ROWS:
                    for _ in range(CHUNK):
                        store.add(next(source))
                    added += CHUNK
                    await asyncio.sleep(0)  # the writer task's turn, as the capture worker yields between exchanges
                else:
                    full += 1
                    await asyncio.sleep(0.001)  # full: spinning would take the GIL from the writer thread
            elapsed = time.perf_counter() - started
            written = added - store.counts().pending
            cpu = time.process_time() - cpu_started
            await store.flush()
            counts = store.counts()
            if counts.dropped["buffer_full"] or counts.failed:
                raise RuntimeError(f"{backend}: rows were dropped or failed: {counts}")

            timed = label_items(min(labels_over, written), rng)
            outcomes: Counter[str] = Counter()
            label_started, label_cpu_started = time.perf_counter(), time.process_time()
            for items in batches(timed, 1_000):
                outcomes.update(outcome.kind for outcome in await store.attach_labels(items))
            label_seconds = time.perf_counter() - label_started
            label_cpu = time.process_time() - label_cpu_started
        finally:
            await store.close(asyncio.get_running_loop().time() + 60.0)
    return Figures(backend, full / turns, written, elapsed, cpu, len(timed), label_seconds, label_cpu, outcomes)


def report(figures: Figures, captured_rate: float) -> None:
    print(
        f"  write   {figures.rows:,} rows in {figures.seconds:.1f} s: {figures.rows_per_second:,.0f} rows/s,"
        f" {figures.rows_per_second / captured_rate:.1f}x a captured rate of {captured_rate:,.0f}/s;"
        f" CPU {figures.cpu_seconds / figures.rows * 1e6:.0f} µs/row (this process); the buffer was full on"
        f" {figures.full:.0%} of the producer's turns"
    )
    print(
        f"  labels  {figures.labels:,} items in batches of 1,000: {figures.labels_per_second:,.0f} labels/s;"
        f" CPU {figures.label_cpu_seconds / figures.labels * 1e6:.0f} µs/label (this process)"
    )
    print("          " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(figures.outcomes.items())))


def captured_rate(seconds: float) -> float | None:
    """Records/s a sidecar at sample rate 1 captured under wrk at 32 connections; None without wrk or nginx."""
    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        return None
    upstream_port, port, admin_port = _free_port(), _free_port(), _free_port()
    with tempfile.TemporaryDirectory(prefix="sidecar-store-capture-") as name, contextlib.ExitStack() as stack:
        tmp = Path(name)
        block = _UPSTREAM_SERVER.format(host=HOST, port=upstream_port, response=RESPONSE_BODY)
        stack.enter_context(_nginx(tmp, "upstream", block, upstream_port))
        settings = {"SIDECAR_SAMPLE_RATE": "1", "SIDECAR_LOG_SINK": "none", "SIDECAR_ADMIN_PORT": str(admin_port)}
        stack.enter_context(_sidecar(tmp, upstream_port, port, settings))
        script = _write_wrk_script(tmp)
        _wrk(f"http://{HOST}:{port}/", script, 2, 32, 2.0)  # warm-up
        before, _ = _capture_counts(admin_port)
        started = time.perf_counter()
        _wrk(f"http://{HOST}:{port}/", script, 2, 32, seconds)
        elapsed = time.perf_counter() - started
        time.sleep(1.0)  # the monitoring process's counters reach the next scrape
        after, dropped = _capture_counts(admin_port)
    # Kept by the sampler, whether the monitoring side then kept up or dropped them: the store's demand.
    kept = after - before
    print(f"  a sidecar at sample rate 1 kept {kept:,.0f} records in {elapsed:.1f} s ({dropped:,.0f} of all dropped)")
    return kept / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Predictions and labels per second into SQLite and PostgreSQL.")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each backend is written to")
    parser.add_argument("--labels-over", type=int, default=100_000, help="predictions the labels are drawn from")
    parser.add_argument(
        "--captured-rate", type=float, default=20_000.0, help="captured records/s to compare with, without wrk or nginx"
    )
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f} (other work on the machine slows every figure)")
    print("capture (nginx upstream, wrk at 32 connections)")
    measured = captured_rate(args.seconds)
    if measured is None:
        print(f"  wrk or nginx is missing: comparing with --captured-rate {args.captured_rate:,.0f}/s")
    else:
        args.captured_rate = measured
    print("sqlite (WAL, synchronous=NORMAL)")
    report(asyncio.run(measure("sqlite", None, args.seconds, args.labels_over)), args.captured_rate)
    with run_postgres(durable=True) as server:
        url = server.database("store_write")
        print(f"postgresql ({server.bin.parent.name}, fsync on, on this machine)")
        report(asyncio.run(measure("postgresql", url, args.seconds, args.labels_over)), args.captured_rate)


if __name__ == "__main__":
    main()
