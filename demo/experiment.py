"""The demo's A/B experiment: v1 of the model (control) against v2 (treatment), judged by whether users convert.

The definition is ``demo/experiment.yml``: a split by the ``x-user-id``
header, half the users to each version, ``conversion`` as the primary metric
and the labels' ``accuracy`` as a secondary one. The traffic comes from a
fixed population of :data:`USERS` users, so a user who comes back is served
by the same version.

:class:`Conversions` plays the users. A user applies for a loan for 1-4
applicants; the lender quotes the offer from the model's P(default); the
user takes the offer (converts) more often when the quote is close to the
applicants' real risk (:func:`conversion_probability`). Each user decides
once, on their first quote, and a conversion reaches ``/api/v1/outcomes`` a
few seconds later, keyed by the user (``unit``). A user who does not convert
posts nothing: the sidecar counts that silence as a zero. v2 follows the
hidden truth's curve in age that v1 cannot (:mod:`demo.model_server`), so its
quotes are closer, and its users really do convert more: about 56% against
29% while the traffic is calm, 47% against 28% after the shift. The effect is
made large, so that a demo of two minutes decides it (in about 20 s, at any
``DEMO_SPEED``: it waits for users, not for windows); real ones take weeks
for a point or two.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
from pathlib import Path
from time import perf_counter
from typing import Any, Final

import numpy as np
import orjson
import yaml

from demo.model_server import FloatArray, default_probability
from sidecar.exceptions import UpstreamError
from sidecar.upstream.client import UpstreamClient

__all__ = [
    "DEFINITION",
    "TREATMENT",
    "USERS",
    "USER_HEADER",
    "Conversions",
    "conversion_probability",
    "experiment_definition",
]

DEFINITION: Final = Path(__file__).with_name("experiment.yml")
TREATMENT: Final = "v2"  # the variant v2's server serves
USERS: Final = 2000
USER_HEADER: Final = "x-user-id"
METRIC: Final = "conversion"
# A perfect quote converts 60% of users, one 5 points of default probability off 35%, a wild one 20%.
BASE, GAIN, TOLERANCE = 0.2, 0.4, 0.05
# An outcome posted before the sidecar has stored the user's prediction is unmatched; it is sent
# again a second later, this many times at most.
ATTEMPTS: Final = 5


def experiment_definition(directory: Path, treatment_url: str) -> Path:
    """``demo/experiment.yml`` with v2's upstream set to ``treatment_url``, written in ``directory``."""
    document: dict[str, Any] = yaml.safe_load(DEFINITION.read_text(encoding="utf-8"))
    document["variants"][TREATMENT]["upstream"] = treatment_url
    written = directory / DEFINITION.name
    written.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return written


def conversion_probability(quoted: FloatArray, real: FloatArray) -> float:
    """The chance that a user takes an offer quoted from ``quoted`` (P(default) per applicant), given the
    applicants' ``real`` P(default): falls from 60% as the quotes' mean error grows."""
    error = float(np.mean(np.abs(quoted - real)))
    return BASE + GAIN * math.exp(-error / TOLERANCE)


class Conversions:
    """Decide once per user whether they convert, and post each conversion ``delay`` seconds (a range) later.

    Usage::

        conversions = Conversions(admin_client, token)
        conversions.quoted("u-17", rows, p_default)   # after the user's response came back
        await conversions.run(stop)                   # posts what is due every second
    """

    def __init__(
        self, client: UpstreamClient, token: str, *, delay: tuple[float, float] = (2.0, 5.0), seed: int = 3
    ) -> None:
        self._client = client
        self._headers = [("content-type", "application/json"), ("authorization", f"Bearer {token}")]
        self._delay = delay
        self._rng = np.random.default_rng(seed)
        self._decided: set[str] = set()  # at most USERS
        self._due: list[tuple[float, str, int]] = []  # a heap of (due time, user, attempts so far)

    def quoted(self, user: str, rows: FloatArray, quoted: FloatArray) -> None:
        """``user`` was quoted ``quoted`` for the applicants ``rows`` (their real features, not as sent)."""
        if user in self._decided:
            return
        self._decided.add(user)
        if self._rng.random() < conversion_probability(quoted, default_probability(rows)):
            self.convert(user)

    def convert(self, user: str) -> None:
        """``user`` took the offer: post it ``delay`` seconds from now."""
        heapq.heappush(self._due, (perf_counter() + float(self._rng.uniform(*self._delay)), user, 0))

    async def run(self, stop: asyncio.Event) -> None:
        """Post due conversions every second until ``stop``; a failed post is skipped, as for the labels."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            due: list[tuple[str, int]] = []
            while self._due and self._due[0][0] <= perf_counter() and len(due) < 1000:
                _, user, attempts = heapq.heappop(self._due)
                due.append((user, attempts))
            if due:
                with contextlib.suppress(UpstreamError, orjson.JSONDecodeError):
                    await self._post(due)

    async def _post(self, due: list[tuple[str, int]]) -> None:
        body = orjson.dumps([{"unit": user, "metric": METRIC, "value": 1} for user, _ in due])
        async with self._client.request("POST", "/api/v1/outcomes", self._headers, body) as response:
            answer = orjson.loads(await response.read())
        if response.status != 200:
            return
        retry_at = perf_counter() + 1.0
        # The items come back in the order they were sent.
        for (user, attempts), item in zip(due, answer["items"], strict=True):
            if item["outcome"] == "unmatched" and attempts + 1 < ATTEMPTS:
                heapq.heappush(self._due, (retry_at, user, attempts + 1))
