"""How fast does the prediction store join delayed labels? Labels per second, in batches of 1,000.

The store is the real one (:class:`PredictionStore`, SQLite in WAL mode) in a
temporary directory. Wall-clock time, since the work runs in the store's
writer thread; CPU time (all threads) is printed beside it, as it moves less
when other work shares the machine. Each run, in a fresh store:

- **write**: 100,000 predictions (3-class scores, two segment features),
  added 1,000 at a time and flushed, as the capture worker's traffic would be;
- **labels**: labels for a random 60% of them, plus 5% duplicates of labels
  already sent and 5% unknown request ids, attached in batches of 1,000.
  Twice: in *prediction order*, as a
  labelling job that works through past traffic sends them (batches touch
  neighbouring rows), and in *random order*, the worst case (each label
  rewrites a different page of the file);
- **labelled()**: after the remaining 40% are labelled, one
  :meth:`~PredictionStore.labelled` over a window holding all 100,000
  labelled predictions (the median of ``--repeat`` calls);
- **api**: the whole path a labelling job sees. The predictions are written
  to a state directory first, then a real sidecar (``Sidecar``, uvicorn on
  127.0.0.1) starts on it and the labels, in random order, are POSTed to
  ``/api/v1/labels`` in batches of 1,000 over one kept-alive connection:
  JSON parsing, validation, the join, the accounting (performance rows,
  label drift, delay) and the JSON response included.

No figure here has a target yet: there is no baseline in this run to state
one as a ratio to, and the absolute 10,000 labels/s once printed was set on
another machine (docs/architecture.md, "Performance targets").

Usage::

    python -m benchmarks.label_ingest [--predictions 100000] [--batch 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections import Counter

import numpy as np
import orjson

from sidecar.config import Settings
from sidecar.records import PredictionRecord
from sidecar.server import Sidecar
from sidecar.store import LabelItem, PredictionStore
from sidecar.upstream.client import UpstreamClient

__all__ = ["main"]

CLASSES = ("setosa", "versicolor", "virginica")
COUNTRIES = ("DE", "FR", "US", "JP")
T0 = 1_764_144_638.0  # 2025-11-26, the first prediction's time
SPACING = 0.1  # seconds between predictions
SHARE_LABELLED = 0.6
SHARE_DUPLICATE = 0.05
SHARE_UNKNOWN = 0.05


def make_records(count: int, rng: np.random.Generator, t0: float = T0) -> list[PredictionRecord]:
    """One single-row request per record, ``SPACING`` seconds apart."""
    scores = rng.dirichlet((1.0, 1.0, 1.0), size=count)
    return [
        PredictionRecord(
            timestamp=t0 + i * SPACING,
            request_id=f"req-{i:08d}",
            row=0,
            model_name="iris",
            model_version="3",
            variant="primary",
            features={"country": COUNTRIES[i % 4], "device": "ios", "age": 30 + i % 50, "email": "x"},
            prediction=CLASSES[int(np.argmax(scores[i]))],
            confidence=float(scores[i].max()),
            scores=[round(float(s), 4) for s in scores[i]],
            latency_ms=4.2,
            status_code=200,
            strategy="random",
            probability=0.5,
        )
        for i in range(count)
    ]


def label(i: int) -> LabelItem:
    return LabelItem(f"req-{i:08d}", None, CLASSES[i % 3], T0 + i * SPACING + 3600.0)


def make_labels(count: int, rng: np.random.Generator, *, ordered: bool) -> tuple[list[LabelItem], list[LabelItem]]:
    """The timed items (60% of the predictions, duplicates and unknowns mixed in) and the rest."""
    chosen = rng.permutation(count)
    cut = int(count * SHARE_LABELLED)
    first = [int(i) for i in chosen[:cut]]
    duplicates = [first[int(j)] for j in rng.integers(0, cut, size=int(count * SHARE_DUPLICATE))]
    unknown = [int(u) for u in rng.integers(count, 2 * count, size=int(count * SHARE_UNKNOWN))]
    # Whichever of a pair comes first joins and the other is the duplicate: the counts are the same.
    mixed = first + duplicates + unknown
    mixed = sorted(mixed) if ordered else [mixed[int(j)] for j in rng.permutation(len(mixed))]
    return [label(i) for i in mixed], [label(int(i)) for i in chosen[cut:]]


def batches(items: list[LabelItem], size: int) -> list[list[LabelItem]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def run(predictions: int, batch: int, repeat: int, *, ordered: bool) -> None:
    rng = np.random.default_rng(7)
    records = make_records(predictions, rng)
    timed, rest = make_labels(predictions, rng, ordered=ordered)
    with tempfile.TemporaryDirectory(prefix="label-ingest-") as state_dir:
        store = PredictionStore(
            state_dir,
            segment_features=("country", "device"),
            max_rows=predictions,
            # The records are dated in the past: a clock just after the last keeps the TTL out of the way.
            clock=lambda: T0 + predictions * SPACING,
        )
        await store.start()
        try:
            started = time.perf_counter()
            for chunk in range(0, predictions, batch):
                store.add(records[chunk : chunk + batch])
                await store.flush()
            write_seconds = time.perf_counter() - started

            outcomes: Counter[str] = Counter()
            started, cpu_started = time.perf_counter(), time.process_time()
            for items in batches(timed, batch):
                outcomes.update(outcome.kind for outcome in await store.attach_labels(items))
            label_seconds = time.perf_counter() - started
            label_cpu_seconds = time.process_time() - cpu_started

            for items in batches(rest, batch):
                await store.attach_labels(items)
            query_seconds = []
            for _ in range(repeat):
                started = time.perf_counter()
                joined = await store.labelled(since=T0)
                query_seconds.append(time.perf_counter() - started)
        finally:
            await store.close(asyncio.get_running_loop().time() + 30.0)

    labels_per_second = len(timed) / label_seconds
    print(f"labels in {'prediction' if ordered else 'random'} order")
    print(f"  write      {predictions:,} predictions: {predictions / write_seconds:,.0f} rows/s")
    print(
        f"  labels     {len(timed):,} items in batches of {batch:,}: {labels_per_second:,.0f} labels/s"
        f" (no target yet); CPU {label_cpu_seconds / len(timed) * 1e6:.0f} µs/label"
    )
    print("             " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(outcomes.items())))
    print(
        f"  labelled() {len(joined):,} rows in {statistics.median(query_seconds) * 1000:,.0f} ms"
        f" (median of {repeat}; best {min(query_seconds) * 1000:,.0f} ms)"
    )


async def run_api(predictions: int, batch: int) -> None:
    rng = np.random.default_rng(7)
    # Dated just before now, so the sidecar's own TTL and performance window keep them.
    t0 = time.time() - predictions * SPACING - 60.0
    records = make_records(predictions, rng, t0)
    timed, _ = make_labels(predictions, rng, ordered=False)
    with tempfile.TemporaryDirectory(prefix="label-api-") as state_dir:
        store = PredictionStore(state_dir, max_rows=predictions)
        await store.start()
        for chunk in range(0, predictions, batch):
            store.add(records[chunk : chunk + batch])
            await store.flush()
        await store.close(asyncio.get_running_loop().time() + 60.0)
        settings = Settings.from_env(
            {
                "SIDECAR_UPSTREAM_URL": "http://127.0.0.1:9",  # never called: only the admin port is used
                "SIDECAR_LISTEN_HOST": "127.0.0.1",
                "SIDECAR_LISTEN_PORT": "0",
                "SIDECAR_ADMIN_HOST": "127.0.0.1",
                "SIDECAR_ADMIN_PORT": "0",
                "SIDECAR_STATE_DIR": state_dir,
                "SIDECAR_MODEL_NAME": "iris",
                "SIDECAR_ADMIN_TOKEN": "bench",
                "SIDECAR_LOG_SINK": "none",
                "SIDECAR_STORE_MAX_ROWS": str(predictions),
            }
        )
        bodies = [
            orjson.dumps([{"request_id": i.request_id, "label": i.label, "timestamp": i.timestamp} for i in items])
            for items in batches(timed, batch)
        ]
        headers = [("authorization", "Bearer bench"), ("content-type", "application/json")]
        outcomes: Counter[str] = Counter()
        async with Sidecar(settings) as sidecar:
            admin = f"http://127.0.0.1:{sidecar.admin_port}"
            client = UpstreamClient(admin, timeout=60, connect_timeout=5, max_connections=1)
            await client.open()
            try:
                started, cpu_started = time.perf_counter(), time.process_time()
                for body in bodies:
                    async with client.request("POST", "/api/v1/labels", headers, body) as response:
                        answer = orjson.loads(await response.read())
                    assert response.status == 200, answer
                    outcomes.update({k: answer[k] for k in ("joined", "unmatched", "duplicate", "invalid")})
                seconds = time.perf_counter() - started
                cpu = time.process_time() - cpu_started
            finally:
                await client.close()
    rate = len(timed) / seconds
    print("labels through POST /api/v1/labels (random order, one process: client and sidecar share its CPU)")
    print(
        f"  api        {len(timed):,} items in batches of {batch:,}: {rate:,.0f} labels/s"
        f" (no target yet); CPU {cpu / len(timed) * 1e6:.0f} µs/label"
    )
    print("             " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(outcomes.items())))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Labels per second into the prediction store.")
    parser.add_argument("--predictions", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f} (other work on the machine slows every figure)")
    for ordered in (True, False):
        asyncio.run(run(args.predictions, args.batch, args.repeat, ordered=ordered))
    asyncio.run(run_api(args.predictions, args.batch))


if __name__ == "__main__":
    main()
