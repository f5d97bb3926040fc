"""Sidecar replicas on one PostgreSQL store: real ``ml-sidecar serve`` processes, a scorer, the table read directly.

Each :class:`Replica` is ``python -m sidecar serve`` (:func:`tests.servers.serve_process`) in the
default process mode: a serving process and its monitoring process, which holds the store, the
leader lock and the evaluator. They all point ``SIDECAR_STATE_URL`` at one database of the session's
PostgreSQL (``tests/postgres.py``). :class:`Scorer` is the model server behind them; the expected
figures are computed here, by scikit-learn, from what the test sent, never from what a sidecar answers.

Usage::

    async with run_server(Scorer("classification")) as port, run_replicas(f"http://127.0.0.1:{port}", url, 2) as fleet:
        leader, follower = await leader_and_follower(fleet)
        sent = await predict(leader, [f"a-{i}" for i in range(50)], rows=5, seed=1)
        await wait_for_rows(url, len(sent))
        status, answer, response = await post_labels(follower, [{"request_id": "a-0", "row": 0, "label": 1}])
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.http import RawResponse, raw_request, scrape
from tests.servers import Scope, read_body, serve_process

__all__ = [
    "MODEL",
    "PREDICT",
    "TOKEN",
    "Replica",
    "Scorer",
    "fleet_families",
    "leader_and_follower",
    "post_labels",
    "predict",
    "predict_on_both",
    "probability",
    "regression_value",
    "run_replicas",
    "stored",
    "wait_for_rows",
]

MODEL = "churn"
TOKEN = "fleet-token"
PREDICT = f"/v1/models/{MODEL}:predict"
_AUTH = [("authorization", f"Bearer {TOKEN}"), ("content-type", "application/json")]
# The families only the leader of a shared store exports, one series per model across the fleet.
_FLEET_FAMILIES = (
    "mlsidecar_model_performance",
    "mlsidecar_model_performance_samples",
    "mlsidecar_label_coverage",
    "mlsidecar_prediction_store_rows",
)
# How long a replica's log is kept (its tail), to show why a process failed.
_LOG_BYTES = 64 << 10


def probability(x: float) -> float:
    """The classifier's P(1) for an instance ``{"x": x}``."""
    return 1 / (1 + math.exp(-x))


def regression_value(x: float) -> float:
    """The regressor's prediction for an instance ``{"x": x}``: a float far from [0, 1].

    The sidecar reads a float output in [0, 1] as a binary classifier's P(1)
    (``sidecar/protocols/predictions.py``, rule 3), whatever ``SIDECAR_TASK``
    says, so a regressor's outputs must stay outside it for the test to compare
    values: with |x| < 9 (4.5 standard deviations here) they lie in (10, 190).
    """
    return 100.0 + 10.0 * x


@dataclass(frozen=True)
class Scorer:
    """A KServe V1 model server: ``[[1 - p, p]]`` per instance (classification) or ``100 + 10x`` (regression).

    Any GET is its health check (``SIDECAR_UPSTREAM_HEALTH_PATH`` is ``/``), so the replicas are ready.
    """

    task: str

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        body = await read_body(receive)
        if scope["method"] == "GET":
            payload = b'{"status": "ok"}'
        else:
            xs = [float(row["x"]) for row in orjson.loads(body)["instances"]]
            if self.task == "classification":
                payload = orjson.dumps({"predictions": [[1 - probability(x), probability(x)] for x in xs]})
            else:
                payload = orjson.dumps({"predictions": [regression_value(x) for x in xs]})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


@dataclass
class Replica:
    """One ``ml-sidecar serve`` process on the shared store, with its ports and the tail of its log."""

    name: str
    process: asyncio.subprocess.Process
    proxy_port: int
    admin_port: int
    log: bytearray = field(default_factory=bytearray)

    async def metrics(self) -> dict[str, float]:
        return await scrape(self.admin_port)

    async def performance(self) -> dict[str, Any]:
        response = await raw_request(self.admin_port, "GET", "/api/v1/performance")
        assert response.status == 200, response
        body: dict[str, Any] = orjson.loads(response.body)
        return body

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        response = await raw_request(self.admin_port, "GET", "/readyz")
        return response.status, orjson.loads(response.body)

    async def leads(self) -> bool:
        """``mlsidecar_store_leader`` as this replica exports it now."""
        return (await self.metrics())[f'mlsidecar_store_leader{{model="{MODEL}"}}'] == 1.0

    async def kill(self) -> list[int]:
        """SIGKILL the serving process, its monitoring process and the fork server: a pod killed outright.

        Every process of the tree is listed first and then killed, so none gets to close its
        database connections: the server sees the sessions end when the kernel closes their
        sockets. Returns the ids killed.
        """
        pids = [self.process.pid, *_descendants(self.process.pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await self.process.wait()
        return pids

    def tail(self) -> str:
        return self.log.decode(errors="replace")


@asynccontextmanager
async def run_replicas(
    upstream_url: str, state_url: str, count: int, env: Mapping[str, str] | None = None
) -> AsyncIterator[list[Replica]]:
    """``count`` replicas on ``state_url``, started together, and stopped on the way out (see serve_process)."""
    settings = {
        "SIDECAR_STATE_URL": state_url,
        "SIDECAR_MODEL_NAME": MODEL,
        "SIDECAR_ADMIN_TOKEN": TOKEN,
        "SIDECAR_LOG_SINK": "none",
        **(env or {}),
    }
    async with contextlib.AsyncExitStack() as stack:
        names = [chr(ord("a") + i) for i in range(count)]
        replicas = await asyncio.gather(
            *(stack.enter_async_context(replica_process(upstream_url, n, settings)) for n in names)
        )
        yield list(replicas)


@asynccontextmanager
async def replica_process(upstream_url: str, name: str, env: Mapping[str, str]) -> AsyncIterator[Replica]:
    """One ``ml-sidecar serve`` named ``name``, its log kept (:meth:`Replica.tail`), stopped on the way out."""
    async with serve_process(upstream_url, env) as (process, proxy_port, admin_port):
        replica = Replica(name, process, proxy_port, admin_port)
        # serve_process stops reading stderr once the ports are known; a full pipe would then
        # block the sidecar's logging, so the rest is read here, and its tail kept.
        drain = asyncio.create_task(_drain(process, replica.log))
        try:
            yield replica
        except BaseException:
            # The test failed: what the replica logged shows under the test's captured stderr.
            sys.stderr.write(f"--- the end of replica {name}'s log ---\n{replica.tail()}\n")
            raise
        finally:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain


async def _drain(process: asyncio.subprocess.Process, log: bytearray) -> None:
    assert process.stderr is not None
    while chunk := await process.stderr.read(4096):
        log += chunk
        del log[:-_LOG_BYTES]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from ``/proc``'s parent ids."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # The command name, in parentheses, may hold spaces: the parent id follows its last ')'.
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    stack = [pid]
    while stack:
        children = parents.get(stack.pop(), [])
        found += children
        stack += children
    return found


async def predict(
    replica: Replica, request_ids: Sequence[str], *, rows: int, seed: int, concurrency: int = 8
) -> dict[tuple[str, int], float]:
    """One request of ``rows`` instances per id through the replica's proxy; the x of every (request id, row)."""
    rng = random.Random(seed)
    bodies = {rid: [round(rng.gauss(0.0, 2.0), 4) for _ in range(rows)] for rid in request_ids}
    gate = asyncio.Semaphore(concurrency)

    async def one(request_id: str) -> None:
        body = orjson.dumps({"instances": [{"x": x} for x in bodies[request_id]]})
        async with gate:
            response = await raw_request(replica.proxy_port, "POST", PREDICT, [("x-request-id", request_id)], body)
        assert response.status == 200, response

    await asyncio.gather(*(one(rid) for rid in request_ids))
    return {(rid, row): x for rid, xs in bodies.items() for row, x in enumerate(xs)}


async def predict_on_both(
    fleet: Sequence[Replica], state_url: str, requests: tuple[int, int], *, rows: int, seeds: tuple[int, int]
) -> dict[tuple[str, int], float]:
    """:func:`predict` on two replicas at once (ids ``a-0``... and ``b-0``...), then :func:`wait_for_rows` for all."""
    a, b = fleet
    sent_a, sent_b = await asyncio.gather(
        predict(a, [f"a-{i}" for i in range(requests[0])], rows=rows, seed=seeds[0]),
        predict(b, [f"b-{i}" for i in range(requests[1])], rows=rows, seed=seeds[1]),
    )
    sent = {**sent_a, **sent_b}
    await wait_for_rows(state_url, len(sent))
    return sent


async def post_labels(replica: Replica, items: Sequence[Mapping[str, Any]]) -> tuple[int, Any, RawResponse]:
    """``POST /api/v1/labels``: the status, the decoded answer and the raw response."""
    response = await raw_request(replica.admin_port, "POST", "/api/v1/labels", _AUTH, orjson.dumps(list(items)))
    return response.status, orjson.loads(response.body) if response.body else None, response


def stored(state_url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """``sql`` on the shared database, from a connection of the test's own."""
    import psycopg  # as tests/postgres.py: collecting the suite does not need the driver

    with psycopg.connect(state_url, autocommit=True) as connection:
        return connection.execute(sql, params).fetchall()


async def wait_for_rows(state_url: str, rows: int, timeout: float = 20.0) -> None:
    """Wait until the ``predictions`` table holds ``rows`` rows (every replica's writer has flushed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (held := (await asyncio.to_thread(stored, state_url, "SELECT count(*) FROM predictions"))[0][0]) < rows:
        assert loop.time() < deadline, f"the table holds {held} of {rows} predictions"
        await asyncio.sleep(0.05)
    assert held == rows, f"the table holds {held} predictions, {rows} were sent"


async def leader_and_follower(fleet: Sequence[Replica], timeout: float = 20.0) -> tuple[Replica, Replica]:
    """The replica exporting ``mlsidecar_store_leader 1`` and one exporting 0, once exactly one leads."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        leading = [replica for replica, leads in zip(fleet, await _leading(fleet), strict=True) if leads]
        if len(leading) == 1:
            (leader,) = leading
            return leader, next(replica for replica in fleet if replica is not leader)
        assert loop.time() < deadline, f"replicas leading: {[replica.name for replica in leading]}"
        await asyncio.sleep(0.05)


async def _leading(fleet: Iterable[Replica]) -> list[bool]:
    return list(await asyncio.gather(*(replica.leads() for replica in fleet)))


def fleet_families(metrics: Mapping[str, float]) -> dict[str, float]:
    """The samples of the families only the leader exports."""
    return {key: value for key, value in metrics.items() if key.split("{", 1)[0] in _FLEET_FAMILIES}
