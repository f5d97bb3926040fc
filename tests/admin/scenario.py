"""A small credit model, its reference profile and its traffic: the status page's tests and screenshot share them.

The model is a real ASGI app (KServe V1): ``P(good) = sigmoid(income / 10 − 5)``
per instance. :func:`rows` draws calm traffic from the reference
distributions, or drifted traffic where ``income`` moves by ``income_shift``
standard deviations.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from tests.drift.helpers import categorical, numeric, profile
from tests.http import raw_request
from tests.servers import read_body

Scope = dict[str, Any]
T = TypeVar("T")

COUNTRIES = ("DE", "FR", "US")
COUNTRY_SHARES = (0.5, 0.3, 0.2)
REFERENCE_ROWS = 20_000


def p_good(income: float) -> float:
    return 1 / (1 + math.exp(-(income / 10 - 5)))


async def model(scope: Scope, receive: Any, send: Any) -> None:
    """The model server: POST answers the predictions, any GET (its health path) 200."""
    if scope["method"] == "POST":
        instances = orjson.loads(await read_body(receive))["instances"]
        payload = orjson.dumps({"predictions": [p_good(float(row["income"])) for row in instances]})
    else:
        payload = b'{"status": "ok"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def write_reference(path: Path, *, extra: Sequence[str] = (), other_category: str | None = None) -> Path:
    """The reference profile of :func:`rows`' calm traffic, with features ``extra`` (numeric, N(0, 1)) besides.

    ``other_category`` adds one more reference category to ``country``, seen in none of the traffic.
    """
    rng = np.random.default_rng(7)
    n = REFERENCE_ROWS
    income = rng.normal(50.0, 10.0, n)
    p = np.array([p_good(x) for x in income])
    countries = [*COUNTRIES, *([other_category] if other_category else [])]
    shares = [s * (0.95 if other_category else 1.0) for s in COUNTRY_SHARES]
    features = {
        "income": numeric(income),
        "age": numeric(rng.normal(40.0, 12.0, n)),
        "tenure_months": numeric(rng.gamma(2.0, 12.0, n)),
        "country": categorical(countries, [*shares, *([0.05] if other_category else [])], n),
        **{name: numeric(rng.normal(0.0, 1.0, n)) for name in extra},
    }
    outputs = {
        "prediction": categorical(("0", "1"), (float(np.mean(p < 0.5)), float(np.mean(p >= 0.5))), n),
        "confidence": numeric(np.maximum(p, 1 - p)),
    }
    path.write_bytes(profile(features, outputs=outputs).dumps())
    return path


def rows(
    n: int, seed: int, *, income_shift: float = 0.0, extra: Sequence[str] = (), country_shares: Sequence[float] = ()
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    income = rng.normal(50.0 + 10.0 * income_shift, 10.0, n)
    age = rng.normal(40.0, 12.0, n)
    tenure = rng.gamma(2.0, 12.0, n)
    country = rng.choice(COUNTRIES, size=n, p=list(country_shares or COUNTRY_SHARES))
    out = []
    for i in range(n):
        row: dict[str, Any] = {
            "income": round(float(income[i]), 2),
            "age": round(float(age[i]), 1),
            "tenure_months": round(float(tenure[i]), 1),
            "country": str(country[i]),
        }
        row.update((name, round(float(rng.normal()), 3)) for name in extra)
        out.append(row)
    return out


async def send(proxy_port: int, batch_rows: list[dict[str, Any]], *, batch: int = 25, ids: str = "") -> None:
    """POST the rows to the model through the proxy, ``batch`` per request; with ``ids``, named ``{ids}-{i}``."""
    for i, start in enumerate(range(0, len(batch_rows), batch)):
        body = orjson.dumps({"instances": batch_rows[start : start + batch]})
        headers = [("content-type", "application/json"), *([("x-request-id", f"{ids}-{i}")] if ids else [])]
        response = await raw_request(proxy_port, "POST", "/v1/models/credit:predict", headers, body)
        assert response.status == 200, response


async def get_json(admin_port: int, path: str) -> Any:
    response = await raw_request(admin_port, "GET", path)
    assert response.status == 200, response
    return orjson.loads(response.body)


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 10.0) -> T:
    """The first value of ``check()`` that is not None, polled every 50 ms; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (value := await check()) is None:
        assert loop.time() < deadline, "not in time"
        await asyncio.sleep(0.05)
    return value


async def drift_after(admin_port: int, records: int) -> dict[str, Any]:
    """``/api/v1/drift`` once every feature's window holds ``records`` values or more."""

    async def check() -> dict[str, Any] | None:
        body: dict[str, Any] = await get_json(admin_port, "/api/v1/drift")
        drift = body["drift"]
        done = drift is not None and min(f["stats"]["count"] for f in drift["features"]) >= records
        return body if done else None

    return await eventually(check)
