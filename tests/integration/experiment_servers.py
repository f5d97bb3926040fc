"""The parts of an experiment run end to end: model servers that name themselves, and ``ml-sidecar serve`` processes.

:class:`Model` is a KServe V1 classifier that says in every answer which
model it is (the ``model`` key of the body, the ``x-model`` header), so a
client sees which arm served it. It is ``accurate`` (P(1) = sigmoid(4x): it
calls the sign of x) or not (P(1) = 0.3 whatever x is: it always says 0), and
it behaves ``ok``, ``slow`` (answers after ``delay`` seconds), ``fail`` (500),
or ``hold`` (answers once the test sets ``release``).

:func:`sidecar_process` runs one ``python -m sidecar serve`` in the default
process mode (a serving process and its monitoring process) on its own SQLite
store, and yields it as a :class:`~tests.integration.replicas.Replica`, so the
helpers of :mod:`tests.integration.replicas` (``post_labels``, the metrics)
work on it too. :func:`write_definition` writes an experiment definition for
``SIDECAR_EXPERIMENT_PATH``.

Usage::

    async with run_server(Model("control")) as control, run_server(Model("treatment")) as treatment:
        path = write_definition(tmp_path, split({"control": 0.5, "treatment": 0.5}, upstreams={"treatment": treatment}))
        async with sidecar_process(f"http://127.0.0.1:{control}", {"SIDECAR_EXPERIMENT_PATH": str(path)}) as sidecar:
            response = await predict(sidecar, 1.5, user="u-1")
            served_by(response)                      # "control" or "treatment", the same for u-1 every time
            await experiments(sidecar)               # GET /api/v1/experiments's one entry
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml

from tests.http import RawResponse, raw_request
from tests.integration.replicas import MODEL, PREDICT, TOKEN, Replica, replica_process
from tests.servers import Scope, read_body

__all__ = [
    "AUTH",
    "Behaviour",
    "Model",
    "closed_port",
    "experiments",
    "post_json",
    "predict",
    "series",
    "served_by",
    "sidecar_process",
    "split",
    "write_definition",
]

AUTH = [("authorization", f"Bearer {TOKEN}"), ("content-type", "application/json")]
# The settings every sidecar of these tests runs with: no prediction log, the token of replicas.py.
BASE_ENV: Mapping[str, str] = {
    "SIDECAR_MODEL_NAME": MODEL,
    "SIDECAR_ADMIN_TOKEN": TOKEN,
    "SIDECAR_LOG_SINK": "none",
    "SIDECAR_POSITIVE_LABEL": "1",
}

Behaviour = Literal["ok", "slow", "fail", "hold"]


@dataclass
class Model:
    """A KServe V1 classifier that names itself in its answers; see the module docstring.

    ``seen`` keeps the request bodies of its prediction requests (not the health checks' GETs).
    """

    name: str
    accurate: bool = True
    behaviour: Behaviour = "ok"
    delay: float = 1.0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[bytes] = field(default_factory=list)

    def probability(self, x: float) -> float:
        return 1 / (1 + math.exp(-4 * x)) if self.accurate else 0.3

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        body = await read_body(receive)
        status = 200
        if scope["method"] == "GET":
            answer = b'{"status": "ok"}'
        else:
            self.seen.append(body)
            xs = [float(row["x"]) for row in orjson.loads(body)["instances"]]
            ps = [self.probability(x) for x in xs]
            answer = orjson.dumps({"predictions": [[1 - p, p] for p in ps], "model": self.name})
            if self.behaviour == "slow":
                await asyncio.sleep(self.delay)
            elif self.behaviour == "hold":
                # Bounded: a test that never releases it still ends.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.release.wait(), timeout=10)
            elif self.behaviour == "fail":
                status, answer = 500, b'{"error": "model crashed"}'
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(answer)).encode()),
            (b"x-model", self.name.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def closed_port() -> socket.socket:
    """A socket bound to a port of 127.0.0.1 and not listening: every connection to it is refused.

    Kept bound (close it when done) so that no other server takes the port meanwhile.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def split(
    weights: Mapping[str, float], *, upstreams: Mapping[str, int], name: str = "ranker-v2", **more: Any
) -> dict[str, Any]:
    """A split experiment keyed by ``header:x-user-id``: ``weights`` in order, a treatment's upstream by port.

    ``more`` adds or replaces top-level keys (``metrics``, ``mde``, ...); by default the primary metric is
    accuracy, from the labels.
    """
    variants = {
        arm: {"weight": weight, **({"upstream": f"http://127.0.0.1:{upstreams[arm]}"} if arm in upstreams else {})}
        for arm, weight in weights.items()
    }
    return {
        "name": name,
        "variants": variants,
        "assignment": {"key": "header:x-user-id"},
        "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
        "mde": 0.05,
        **more,
    }


def write_definition(directory: Path, definition: Mapping[str, Any]) -> Path:
    """``definition`` as the YAML file ``SIDECAR_EXPERIMENT_PATH`` names, its keys in order."""
    path = directory / f"{definition['name']}.yaml"
    path.write_text(yaml.safe_dump(dict(definition), sort_keys=False))
    return path


@asynccontextmanager
async def sidecar_process(upstream_url: str, env: Mapping[str, str] | None = None) -> AsyncIterator[Replica]:
    """One ``ml-sidecar serve`` (process mode, SQLite in a temporary directory), stopped on the way out.

    Its log is read as it comes (a full pipe would block the sidecar's logging), and its tail shown under the
    test's captured stderr when the test fails.
    """
    async with replica_process(upstream_url, "sidecar", {**BASE_ENV, **(env or {})}) as replica:
        yield replica


async def predict(sidecar: Replica, x: float, *, user: str | None = None, request_id: str | None = None) -> RawResponse:
    """One prediction request of one instance ``{"x": x}`` through the sidecar's proxy."""
    headers = [("content-type", "application/json")]
    if user is not None:
        headers.append(("x-user-id", user))
    if request_id is not None:
        headers.append(("x-request-id", request_id))
    body = orjson.dumps({"instances": [{"x": x}]})
    return await raw_request(sidecar.proxy_port, "POST", PREDICT, headers, body)


def served_by(response: RawResponse) -> str:
    """The model that answered: the name a :class:`Model` puts in its body."""
    assert response.status == 200, response
    name: str = orjson.loads(response.body)["model"]
    return name


async def experiments(sidecar: Replica) -> dict[str, Any]:
    """``GET /api/v1/experiments``: its one experiment."""
    response = await raw_request(sidecar.admin_port, "GET", "/api/v1/experiments")
    assert response.status == 200, response
    (entry,) = orjson.loads(response.body)["experiments"]
    body: dict[str, Any] = entry
    return body


async def post_json(sidecar: Replica, path: str, body: Any) -> tuple[int, Any]:
    """A POST with the admin token to the admin port: the status and the decoded answer."""
    response = await raw_request(sidecar.admin_port, "POST", path, AUTH, orjson.dumps(body))
    return response.status, orjson.loads(response.body) if response.body else None


def series(name: str, **labels: str) -> str:
    """The key of one sample in a :func:`tests.http.scrape`: ``name{label="value",...}``, labels sorted."""
    return name + "{" + ",".join(f'{key}="{labels[key]}"' for key in sorted(labels)) + "}"
