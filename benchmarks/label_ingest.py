"""How fast does the prediction store join delayed labels? Labels per second, in batches of 1,000.

The store is the real one (:class:`PredictionStore`): SQLite in WAL mode in a
temporary directory and, with ``--postgres``, the same steps again on
PostgreSQL, in the same run. Wall-clock time, since the work runs in the
store's writer thread; CPU time is printed beside it, as it moves less when
other work shares the machine: this process's (all threads), plus the
monitoring process's in the api step, and PostgreSQL's own server processes
apart. Each run, in a fresh store (a fresh database):

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
  to the store first, then a real sidecar (``Sidecar``, uvicorn on
  127.0.0.1, its monitoring process as shipped) starts on it and the labels,
  in random order, are POSTed to ``/api/v1/labels`` in batches of 1,000 over
  one kept-alive connection: JSON parsing, validation, the hop to the
  monitoring process, the join, the accounting (performance rows, label
  drift, delay) and the JSON response included.

PostgreSQL (``--postgres``) is Debian's, started as the tests start it
(tests/postgres.py: ``initdb`` in a temporary directory, 127.0.0.1, SCRAM),
with ``fsync`` on, as a deployment runs it, and on this machine, so its
server processes take their CPU from the same cores; its sidecar is the one
replica, so it leads. PostgreSQL dates labels by its own clock and keeps the
store's rows in a table every replica shares; the write step goes through
``COPY``.

No figure here has a target yet: there is no baseline in this run to state
one as a ratio to, and the absolute 10,000 labels/s once printed was set on
another machine (docs/architecture.md, "Performance targets").

Usage::

    python -m benchmarks.label_ingest [--predictions 100000] [--batch 1000] [--repeat 3] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from sidecar.config import Settings
from sidecar.records import PredictionRecord
from sidecar.server import Sidecar
from sidecar.store import LabelItem, PredictionStore
from sidecar.upstream.client import UpstreamClient
from tests.postgres import Postgres, run_postgres

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


_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Backend:
    """Where a run keeps its store: SQLite (``server`` None) or a fresh database of a PostgreSQL server."""

    server: Postgres | None = None

    def url(self) -> str | None:
        """None for SQLite; else the URL of a new, empty database, so that no run sees another's rows."""
        return None if self.server is None else self.server.database()

    def server_cpu(self) -> float:
        """CPU seconds PostgreSQL's server processes have used so far; 0 for SQLite, which runs in this process."""
        if self.server is None:
            return 0.0
        postmaster = int((self.server.data / "postmaster.pid").read_text().split()[0])
        # Backends that ended were reaped by the postmaster: their time is in its children's fields.
        return _cpu(postmaster, children=True) + sum(_cpu(pid) for pid in _children(postmaster))


def _cpu(pid: int, *, children: bool = False) -> float:
    """utime + stime of ``pid`` (and cutime + cstime, its reaped children's), in seconds; 0 once it is gone."""
    try:
        # The fields after the command name, which may hold spaces: state is the first, utime the 12th.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = sum(int(field) for field in fields[11 : 15 if children else 13])
    return ticks / _TICKS


def _children(pid: int) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    yield int(entry.name)


class Clocks:
    """Wall time, the sidecar's CPU and the database server's, from when it is made to :meth:`stop`.

    The sidecar's CPU is this process's, plus ``extra()``: the CPU seconds of
    another process of it (the monitoring process) used so far.
    """

    def __init__(self, backend: Backend, extra: Callable[[], float] = lambda: 0.0) -> None:
        self._backend, self._extra = backend, extra
        # The wall clock last: reading /proc is not the work being timed.
        self._cpu, self._server = time.process_time() + extra(), backend.server_cpu()
        self._wall = time.perf_counter()
        self.seconds = self.cpu = self.server_cpu = 0.0

    def stop(self) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu = time.process_time() + self._extra() - self._cpu
        self.server_cpu = self._backend.server_cpu() - self._server

    def per(self, count: int) -> str:
        """CPU per item, in µs: the sidecar's, and the database server's with PostgreSQL."""
        text = f"CPU {self.cpu / count * 1e6:.0f} µs"
        if self._backend.server is not None:
            text += f" + PostgreSQL {self.server_cpu / count * 1e6:.0f} µs"
        return text


async def run(backend: Backend, predictions: int, batch: int, repeat: int, *, ordered: bool) -> None:
    rng = np.random.default_rng(7)
    records = make_records(predictions, rng)
    timed, rest = make_labels(predictions, rng, ordered=ordered)
    with tempfile.TemporaryDirectory(prefix="label-ingest-") as state_dir:
        store = PredictionStore(
            state_dir,
            url=backend.url(),
            model="iris",
            segment_features=("country", "device"),
            max_rows=predictions,
            # The records are dated in the past: a clock just after the last keeps the TTL out of the way.
            clock=lambda: T0 + predictions * SPACING,
        )
        await store.start()
        try:
            write = Clocks(backend)
            for chunk in range(0, predictions, batch):
                store.add(records[chunk : chunk + batch])
                await store.flush()
            write.stop()

            outcomes: Counter[str] = Counter()
            labels = Clocks(backend)
            for items in batches(timed, batch):
                outcomes.update(outcome.kind for outcome in await store.attach_labels(items))
            labels.stop()

            for items in batches(rest, batch):
                await store.attach_labels(items)
            query_seconds = []
            for _ in range(repeat):
                started = time.perf_counter()
                joined = await store.labelled(since=T0)
                query_seconds.append(time.perf_counter() - started)
        finally:
            await store.close(asyncio.get_running_loop().time() + 30.0)

    print(f"  labels in {'prediction' if ordered else 'random'} order")
    print(
        f"    write      {predictions:,} predictions: {predictions / write.seconds:,.0f} rows/s;"
        f" {write.per(predictions)}/row"
    )
    print(
        f"    labels     {len(timed):,} items in batches of {batch:,}: {len(timed) / labels.seconds:,.0f} labels/s"
        f" (no target yet); {labels.per(len(timed))}/label"
    )
    print("               " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(outcomes.items())))
    print(
        f"    labelled() {len(joined):,} rows in {statistics.median(query_seconds) * 1000:,.0f} ms"
        f" (median of {repeat}; best {min(query_seconds) * 1000:,.0f} ms)"
    )


async def run_api(backend: Backend, predictions: int, batch: int) -> None:
    rng = np.random.default_rng(7)
    # Dated just before now, so the sidecar's own TTL and performance window keep them.
    t0 = time.time() - predictions * SPACING - 60.0
    records = make_records(predictions, rng, t0)
    timed, _ = make_labels(predictions, rng, ordered=False)
    url = backend.url()
    with tempfile.TemporaryDirectory(prefix="label-api-") as state_dir:
        store = PredictionStore(state_dir, url=url, model="iris", max_rows=predictions)
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
                **({} if url is None else {"SIDECAR_STATE_URL": url}),
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
            # The labels are joined in the monitoring process (None with SIDECAR_MONITORING_PLANE=inline).
            pid = None if sidecar.monitor is None else sidecar.monitor.pid
            admin = f"http://127.0.0.1:{sidecar.admin_port}"
            client = UpstreamClient(admin, timeout=60, connect_timeout=5, max_connections=1)
            await client.open()
            try:
                clocks = Clocks(backend, lambda: 0.0 if pid is None else _cpu(pid))
                for body in bodies:
                    async with client.request("POST", "/api/v1/labels", headers, body) as response:
                        answer = orjson.loads(await response.read())
                    assert response.status == 200, answer
                    outcomes.update({k: answer[k] for k in ("joined", "unmatched", "duplicate", "invalid")})
                clocks.stop()
            finally:
                await client.close()
    print("  labels through POST /api/v1/labels (random order; CPU: the client and both sidecar processes)")
    print(
        f"    api        {len(timed):,} items in batches of {batch:,}: {len(timed) / clocks.seconds:,.0f} labels/s"
        f" (no target yet); {clocks.per(len(timed))}/label"
    )
    print("               " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(outcomes.items())))


def run_all(backend: Backend, args: argparse.Namespace) -> None:
    for ordered in (True, False):
        asyncio.run(run(backend, args.predictions, args.batch, args.repeat, ordered=ordered))
    asyncio.run(run_api(backend, args.predictions, args.batch))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Labels per second into the prediction store.")
    parser.add_argument("--predictions", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres", action="store_true", help="also run every step on PostgreSQL (tests/postgres.py starts it)"
    )
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f} (other work on the machine slows every figure)")
    print("sqlite (WAL, synchronous=NORMAL)")
    run_all(Backend(), args)
    if args.postgres:
        with run_postgres(durable=True) as server:
            print(f"postgresql {server.bin.parent.name} (fsync on, on this machine)")
            run_all(Backend(server), args)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
