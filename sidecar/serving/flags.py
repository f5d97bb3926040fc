"""Runtime flags: switches an operator (or an alert) flips without a restart.

One flag exists today, ``use_fallback_model``: while it is set, the proxy
sends traffic to ``SIDECAR_FALLBACK_URL`` instead of the primary model, and
every metric of those requests carries ``variant="fallback"``. It is set and
cleared with ``POST /api/v1/flags/use_fallback_model`` (Bearer token), or set
automatically when a P1 serving-failure alert fires and
``SIDECAR_AUTO_FALLBACK=true``.

Flags live in memory: a restart clears them, so a sidecar never comes up
routing away from its model because of a decision nobody remembers.
The proxy reads one attribute per request; nothing here blocks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Gauge

from sidecar.prometheus import gauge
from sidecar.records import rfc3339

__all__ = ["FLAGS", "FlagChange", "Flags", "fallback_gauge"]

logger = logging.getLogger("sidecar.serving.flags")

FLAGS = ("use_fallback_model",)


@dataclass(frozen=True)
class FlagChange:
    """Who set a flag, when and why."""

    value: bool
    source: str  # "api" or "alert:<name>"
    reason: str | None
    at: float


class Flags:
    """The runtime flags of one sidecar.

    Usage::

        flags = Flags(fallback_available=True)
        flags.set("use_fallback_model", True, source="api", reason="model returns 500s")
        if flags.use_fallback_model: ...
    """

    def __init__(self, *, fallback_available: bool, clock: Callable[[], float] = time.time) -> None:
        self.fallback_available = fallback_available
        self.use_fallback_model = False
        self.changes: dict[str, FlagChange] = {}
        self._clock = clock

    def set(self, name: str, value: bool, *, source: str, reason: str | None = None) -> FlagChange:
        """Set or clear a flag. ``KeyError`` for an unknown flag, ``ValueError`` if it cannot be set here."""
        if name not in FLAGS:
            raise KeyError(name)
        if value and not self.fallback_available:
            raise ValueError("use_fallback_model needs SIDECAR_FALLBACK_URL; none is configured")
        change = FlagChange(value, source, reason, self._clock())
        if value != self.use_fallback_model:
            state = "set: traffic goes to the fallback model" if value else "cleared: traffic goes to the primary model"
            logger.warning("use_fallback_model %s (by %s%s)", state, source, f": {reason}" if reason else "")
        self.use_fallback_model = value
        self.changes[name] = change
        return change

    def to_json(self) -> dict[str, Any]:
        change = self.changes.get("use_fallback_model")
        return {
            "use_fallback_model": {
                "value": self.use_fallback_model,
                "available": self.fallback_available,
                "changed_at": None if change is None else rfc3339(change.at),
                "source": None if change is None else change.source,
                "reason": None if change is None else change.reason,
            }
        }


def fallback_gauge(model: str, flags: Flags) -> Gauge:
    """``mlsidecar_fallback_active{model}``: 1 while traffic goes to the fallback model, else 0.

    A prometheus-client gauge with its one child bound here, on no registry
    yet (the assembly registers it). The child reads ``flags`` when scraped,
    so the gauge cannot disagree with the flag the proxy follows, whoever
    set it (the API or an alert).

    Usage::

        registry.register(fallback_gauge("iris", flags))
    """
    active = gauge(
        "fallback_active", "1 while use_fallback_model routes traffic to SIDECAR_FALLBACK_URL, else 0.", ("model",)
    )
    active.labels(model).set_function(lambda: 1.0 if flags.use_fallback_model else 0.0)
    return active
