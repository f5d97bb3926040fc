"""Readiness: is the upstream answering, and is the sidecar able to serve?

Kubelets, load balancers and people all poll ``/readyz``; the upstream check is
cached for ``SIDECAR_READY_CACHE_SECONDS`` and concurrent polls share one
probe, so the model server sees at most one health request per period.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from sidecar.exceptions import UpstreamError
from sidecar.upstream.client import UpstreamClient

__all__ = ["Readiness", "ReadinessReport"]


@dataclass(frozen=True)
class ReadinessReport:
    ready: bool
    reasons: tuple[str, ...] = ()
    checked_at: float = field(default_factory=time.time)


class Readiness:
    """Cached readiness of the sidecar and its upstream.

    Usage::

        readiness = Readiness(client, "/v2/health/ready", cache_seconds=2, timeout=2)
        report = await readiness.check()
        report.ready, report.reasons
    """

    def __init__(self, client: UpstreamClient, health_path: str, *, cache_seconds: float, timeout: float) -> None:
        self._client = client
        self._health_path = health_path
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._cached: ReadinessReport | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self.shutting_down = False

    async def check(self) -> ReadinessReport:
        if self.shutting_down:
            # Tell the load balancer to stop sending traffic while in-flight requests drain.
            return ReadinessReport(False, ("shutting down",))
        async with self._lock:
            now = time.monotonic()
            if self._cached is None or now >= self._expires:
                self._cached = await self._probe()
                self._expires = time.monotonic() + self._cache_seconds
            return self._cached

    async def _probe(self) -> ReadinessReport:
        where = f"upstream GET {self._health_path}"
        try:
            async with self._client.request("GET", self._health_path, [], timeout=self._timeout) as response:
                await response.read()
                status = response.status
        except UpstreamError as exc:
            return ReadinessReport(False, (f"{where} failed ({exc.reason}): {exc}",))
        if not 200 <= status < 300:
            return ReadinessReport(False, (f"{where} returned {status}",))
        return ReadinessReport(True)
