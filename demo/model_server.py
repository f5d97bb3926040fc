"""A small real model for the demo: logistic regression on synthetic credit-risk data, served over KServe V1.

The model is fitted at start-up, in plain numpy, on data drawn from a seeded
generator, so the demo needs no download and gives the same model every run.
Two versions of it are served, each by its own server: v1, linear in the
features, and v2, which adds their squares (``quadratic``) and so follows the
hidden truth's curve in age, which v1 cannot (:func:`default_probability`).

Endpoints::

    GET  /v1/models/credit-risk          {"name": "credit-risk", "ready": true, "features": [...], "classes": [...]}
    POST /v1/models/credit-risk:predict  {"instances": [[48.5, 0.31, 40, 4, 0, "salaried"], {"income": 48.5, ...}]}
                                         -> {"predictions": [[0.61, 0.39], [0.61, 0.39]]}
                                            with the header x-model-version: 1 (or 2)
    GET  /v2/health/ready                {"ready": true}

An instance is a list of values in ``FEATURES`` order or an object keyed by
feature name: five numbers and ``employment``, one of ``EMPLOYMENT``. Each
prediction is the probability vector over ``CLASSES`` (``["repaid",
"default"]``) rather than the class, so a monitor can read the model's
confidence from it. Malformed input gets a 400 ``{"error": message}``.

In numpy, applicants are rows of a float matrix, columns in ``FEATURES``
order, with ``employment`` as its index in ``EMPLOYMENT``; the model one-hot
encodes it, as a real pipeline would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import orjson
import uvicorn
from numpy.typing import NDArray
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ExceptionHandler

__all__ = [
    "CLASSES",
    "EMPLOYMENT",
    "EMPLOYMENT_SHARES",
    "FEATURES",
    "INCOME_MEAN",
    "INCOME_STD",
    "MODEL_NAME",
    "READY_PATH",
    "LogisticRegression",
    "FloatArray",
    "create_app",
    "default_probability",
    "make_dataset",
    "sample_features",
    "serve",
    "train_model",
]

FloatArray = NDArray[np.float64]

MODEL_NAME = "credit-risk"
READY_PATH = "/v2/health/ready"
FEATURES = ("income", "debt_ratio", "age", "credit_lines", "late_payments", "employment")
CLASSES = ("repaid", "default")
INCOME_MEAN = 55.0  # thousands a year
INCOME_STD = 15.0
EMPLOYMENT = ("salaried", "self_employed", "retired", "unemployed")
EMPLOYMENT_SHARES = (0.62, 0.18, 0.14, 0.06)  # in the training data
# Added to the hidden truth's log-odds of defaulting, per employment status.
_EMPLOYMENT_RISK = np.array([0.0, 0.4, -0.3, 1.2])
# The hidden truth's curve in age: the youngest and the oldest applicants default more than
# the middle-aged, by up to 1.5 in log-odds. A model linear in age cannot follow it: v1's
# P(default) is 9 points off the truth on average, v2's (with squared terms) under one.
_AGE_CURVE = 0.8
_AGE_MIDDLE, _AGE_SPREAD = 48.0, 16.0
_EMPLOYMENT = FEATURES.index("employment")
# Bounds the work one request can ask for.
MAX_INSTANCES = 1024


def sample_features(
    rng: np.random.Generator,
    n: int,
    *,
    income_shift: float = 0.0,
    employment_shares: Sequence[float] = EMPLOYMENT_SHARES,
) -> FloatArray:
    """Draw ``n`` applicants, one row each, columns in ``FEATURES`` order.

    ``income_shift`` moves the income mean by that many standard deviations,
    and ``employment_shares`` sets the share of each ``EMPLOYMENT`` status:
    the demo's traffic uses them to drift away from the training data. The
    same generator state gives the same draws whatever they are, so a shift
    changes its own column and nothing else.
    """
    income = np.maximum(rng.normal(INCOME_MEAN + income_shift * INCOME_STD, INCOME_STD, n), 5.0)
    debt_ratio = rng.beta(2.0, 5.0, n)
    age = rng.integers(21, 76, n)
    credit_lines = rng.poisson(4.0, n)
    late_payments = rng.poisson(0.5, n)
    cumulative = np.cumsum(employment_shares) / np.sum(employment_shares)
    employment = np.minimum(np.searchsorted(cumulative, rng.random(n), side="right"), len(EMPLOYMENT) - 1)
    return np.column_stack([income, debt_ratio, age, credit_lines, late_payments, employment]).astype(np.float64)


def _sigmoid(t: FloatArray) -> FloatArray:
    # 1 / (1 + e^-t) without overflowing e^-t for large negative t.
    return np.exp(-np.logaddexp(0.0, -t))


def default_probability(x: FloatArray) -> FloatArray:
    """The hidden truth: each applicant's real chance of defaulting. The model never sees these coefficients;
    the demo's traffic draws the delayed labels it posts from them."""
    income, debt_ratio, age, credit_lines, late_payments, employment = x.T
    # About 0 on average over the applicants' ages (21 to 75), so that a third still default.
    age_curve = ((age - _AGE_MIDDLE) / _AGE_SPREAD) ** 2 - 1.0
    logit = (
        -1.4
        - 0.06 * (income - INCOME_MEAN)
        + 6.0 * (debt_ratio - 0.29)
        - 0.03 * (age - _AGE_MIDDLE)
        + 0.1 * (credit_lines - 4.0)
        + 1.0 * late_payments
        + _EMPLOYMENT_RISK[employment.astype(np.int64)]
        + _AGE_CURVE * age_curve
    )
    return _sigmoid(logit)


def make_dataset(rng: np.random.Generator, n: int) -> tuple[FloatArray, NDArray[np.int64]]:
    """Applicants and whether each defaulted (1) or repaid (0); about a third default."""
    x = sample_features(rng, n)
    y = (rng.random(n) < default_probability(x)).astype(np.int64)
    return x, y


def _design(x: FloatArray, centre: FloatArray | None = None) -> FloatArray:
    """The model's inputs: the numeric columns, with ``centre`` their squares about it, then employment one-hot
    without its first status (the baseline)."""
    numeric = np.delete(x, _EMPLOYMENT, axis=1)
    codes = x[:, _EMPLOYMENT].astype(np.int64)
    one_hot = (codes[:, None] == np.arange(1, len(EMPLOYMENT))).astype(np.float64)
    squares = [] if centre is None else [(numeric - centre) ** 2]
    return np.hstack([numeric, *squares, one_hot])


@dataclass(frozen=True)
class LogisticRegression:
    """A fitted binary logistic regression over standardised features; ``centre`` set: with their squares too.

    Usage::

        model = train_model(seed=0)
        model.predict_proba(sample_features(np.random.default_rng(1), 3))  # shape (3, 2), rows sum to 1
    """

    mean: FloatArray
    scale: FloatArray
    weights: FloatArray
    bias: float
    centre: FloatArray | None = None

    @classmethod
    def fit(
        cls,
        x: FloatArray,
        y: NDArray[np.int64],
        *,
        quadratic: bool = False,
        steps: int = 300,
        learning_rate: float = 0.5,
    ) -> LogisticRegression:
        """Full-batch gradient descent on the mean log-loss; ``quadratic``: the numeric features' squares too."""
        # Squared about the training means, not about 0: a square of raw ages would all but repeat the
        # ages themselves, and gradient descent would crawl along the two.
        centre = np.delete(x, _EMPLOYMENT, axis=1).mean(axis=0) if quadratic else None
        design = _design(x, centre)
        mean, scale = design.mean(axis=0), design.std(axis=0)
        # Standardised features let one learning rate suit income (tens) and debt ratio (tenths) alike.
        z = (design - mean) / scale
        weights = np.zeros(design.shape[1])
        bias = 0.0
        for _ in range(steps):
            error = _sigmoid(z @ weights + bias) - y
            weights -= learning_rate * (z.T @ error) / len(y)
            bias -= learning_rate * float(error.mean())
        return cls(mean, scale, weights, bias, centre)

    def predict_proba(self, x: FloatArray) -> FloatArray:
        """Probabilities of ``CLASSES`` per row: ``[P(repaid), P(default)]``."""
        p_default = _sigmoid(((_design(x, self.centre) - self.mean) / self.scale) @ self.weights + self.bias)
        return np.column_stack([1.0 - p_default, p_default])


def train_model(seed: int = 0, n: int = 2000) -> LogisticRegression:
    """Fit the demo's model on ``n`` synthetic applicants drawn with ``seed``."""
    x, y = make_dataset(np.random.default_rng(seed), n)
    return LogisticRegression.fit(x, y)


class _BadRequest(Exception):
    pass


def _value(where: str, name: str, value: Any) -> float:
    """One feature's value as the model's matrix holds it, or :class:`_BadRequest` saying what is wrong."""
    if name == "employment":
        if isinstance(value, str) and value in EMPLOYMENT:
            return float(EMPLOYMENT.index(value))
        raise _BadRequest(
            f"{where}.{name}: expected one of {', '.join(EMPLOYMENT)}, got {orjson.dumps(value).decode()}"
        )
    # bool is an int subclass, but true/false is no measurement. orjson
    # rejects NaN and infinities, so every number here is finite.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadRequest(f"{where}.{name}: expected a number, got {orjson.dumps(value).decode()}")
    return float(value)


def _row(index: int, instance: Any) -> list[float]:
    where = f"instances[{index}]"
    if isinstance(instance, dict):
        missing = [name for name in FEATURES if name not in instance]
        unknown = sorted(set(instance) - set(FEATURES))
        if missing or unknown:
            raise _BadRequest(f"{where}: expected the keys {', '.join(FEATURES)}; missing {missing}, unknown {unknown}")
        values = [instance[name] for name in FEATURES]
    elif isinstance(instance, list):
        if len(instance) != len(FEATURES):
            raise _BadRequest(f"{where}: expected {len(FEATURES)} values ({', '.join(FEATURES)}), got {len(instance)}")
        values = instance
    else:
        raise _BadRequest(f"{where}: expected a list of values or an object keyed by feature name")
    return [_value(where, name, value) for name, value in zip(FEATURES, values, strict=True)]


def _parse_instances(body: bytes) -> FloatArray:
    """The feature matrix of a KServe V1 predict request, or :class:`_BadRequest` saying what is wrong."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _BadRequest(f"request body is not valid JSON: {exc}") from None
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list) or not instances:
        raise _BadRequest('expected a JSON object {"instances": [...]} with at least one instance')
    if len(instances) > MAX_INSTANCES:
        raise _BadRequest(f"at most {MAX_INSTANCES} instances per request, got {len(instances)}")
    return np.array([_row(i, instance) for i, instance in enumerate(instances)], dtype=np.float64)


def _json(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, headers=headers, media_type="application/json")


def create_app(model: LogisticRegression, version: str = "1") -> Starlette:
    """The model server's ASGI app; its predictions carry ``version`` in ``x-model-version``, which the sidecar
    records as each prediction's model version (``SIDECAR_MODEL_VERSION_HEADER``)."""
    version_header = {"x-model-version": version}

    def _check_name(request: Request) -> None:
        name = request.path_params["name"]
        if name != MODEL_NAME:
            raise HTTPException(404, f"model {name!r} not found; this server has {MODEL_NAME!r}")

    async def model_status(request: Request) -> Response:
        _check_name(request)
        return _json({"name": MODEL_NAME, "ready": True, "features": FEATURES, "classes": CLASSES})

    async def predict(request: Request) -> Response:
        _check_name(request)
        try:
            x = _parse_instances(await request.body())
        except _BadRequest as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"predictions": model.predict_proba(x).tolist()}, headers=version_header)

    async def ready(request: Request) -> Response:
        return _json({"ready": True})

    async def http_error(request: Request, exc: HTTPException) -> Response:
        # JSON errors for unknown paths and methods too, as KServe answers them.
        return _json({"error": exc.detail}, exc.status_code)

    return Starlette(
        routes=[
            # The predict route comes first: "{name}" would also match "credit-risk:predict".
            Route("/v1/models/{name}:predict", predict, methods=["POST"]),
            Route("/v1/models/{name}", model_status, methods=["GET"]),
            Route(READY_PATH, ready, methods=["GET"]),
        ],
        # Starlette types handlers as taking any Exception; it calls this one only with HTTPException.
        exception_handlers={HTTPException: cast("ExceptionHandler", http_error)},
    )


class _Server(uvicorn.Server):
    """A uvicorn server that leaves SIGINT and SIGTERM to its owner.

    The demo runs four servers in one loop and stops them in order; uvicorn's
    own handlers would each claim the signals and re-raise them at exit.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn while the block runs; yields its base URL (port 0: any free port)."""
    server = _Server(
        uvicorn.Config(app, host=host, port=port, ws="none", lifespan="off", log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve(), name="model-server")
    try:
        while not server.started:
            if task.done():
                await task  # re-raises the start-up error, if it raised one
                raise RuntimeError(f"the model server could not listen on {host}:{port}")
            await asyncio.sleep(0.01)
        bound_port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        await task
