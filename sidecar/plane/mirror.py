"""What the monitoring process knows of the serving process: a mirror, refreshed every second.

The alert signals read the Layer-1 counters (error rate, latency), the alert
hooks set the fallback flag and arm trigger-based capture, and the capture
metrics include the drops the proxy counted. All of these live in the serving
process. It sends a :class:`ServingState` once a second; the monitoring side
keeps it in these mirrors, and sends the hooks' actions back as messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.experiments.routing import Router
from sidecar.experiments.shadow import MirrorQueue, Outcome
from sidecar.sampling import Sampler
from sidecar.sampling.base import Decision, Headers
from sidecar.serving.flags import FlagChange, Flags
from sidecar.serving.metrics import LATENCY_BUCKETS, ServingCounts

__all__ = ["MirrorFlags", "RemoteSampler", "RouteMirror", "ServingMirror", "ServingState", "serving_state"]


@dataclass(frozen=True)
class ServingState:
    """The serving process's counters as of ``at`` (cumulative since it started)."""

    # variant -> (status code -> requests, duration bucket counts, non-cumulative)
    routes: dict[str, tuple[dict[int, int], list[int]]]
    use_fallback_model: bool
    flag_changes: dict[str, FlagChange]
    # Capture drops counted on the request path, by reason.
    dropped: dict[str, int]
    at: float = 0.0
    # A split experiment's router: the requests it sent to each arm, by unit and by coin (its
    # ``keyed`` and ``randomised``), for the sample-ratio check on assignment; None without one.
    routing: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    # A shadow experiment's mirrors by outcome, those the serving process counted (its drops, and what ended
    # monitoring processes reported): the monitoring process adds its own Shadow's. None without one.
    shadow: dict[Outcome, int] | None = None


def serving_state(
    counts: ServingCounts,
    flags: Flags,
    dropped: Mapping[str, int],
    at: float,
    router: Router | None = None,
    shadow: MirrorQueue | None = None,
) -> ServingState:
    """Copy what the monitoring side mirrors; O(variants × buckets)."""
    routes = {variant: (dict(route.codes), list(route.duration.counts)) for variant, route in counts.routes.items()}
    routing = None if router is None else (tuple(router.keyed), tuple(router.randomised))
    outcomes = None if shadow is None else dict(shadow.outcomes)
    return ServingState(routes, flags.use_fallback_model, dict(flags.changes), dict(dropped), at, routing, outcomes)


@dataclass
class _Buckets:
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))


@dataclass
class RouteMirror:
    codes: dict[int, int] = field(default_factory=dict)
    duration: _Buckets = field(default_factory=_Buckets)


class ServingMirror:
    """The Layer-1 counters with :class:`~sidecar.serving.metrics.ServingCounts`'s interface.

    Usage::

        mirror = ServingMirror(("primary",))
        mirror.update(state)              # each SERVING message
        mirror.routes["primary"].codes    # {200: 1234, ...}
    """

    def __init__(self, variants: Sequence[str]) -> None:
        self.routes: dict[str, RouteMirror] = {variant: RouteMirror() for variant in variants}
        self.dropped: dict[str, int] = {}
        self.routing: tuple[tuple[int, ...], tuple[int, ...]] | None = None
        self.shadow: dict[Outcome, int] | None = None
        self.updated_at = 0.0

    def update(self, state: ServingState) -> None:
        for variant, (codes, counts) in state.routes.items():
            route = self.routes.setdefault(variant, RouteMirror())
            route.codes = codes
            route.duration.counts = counts
        self.dropped = state.dropped
        self.routing = state.routing
        self.shadow = state.shadow
        self.updated_at = state.at


class MirrorFlags(Flags):
    """The serving process's flags as last mirrored; :meth:`set` asks the serving process to set them.

    The flag the proxy follows is the serving process's: a value set here
    is sent there at once, and shows here from the next mirror update (at
    most a second later), or at once in this process's own reads.

    Usage::

        flags = MirrorFlags(fallback_available=True, send=lambda *message: ...)
        flags.mirror(state)
        flags.set("use_fallback_model", True, source="alert:ServingErrorsHigh")
    """

    def __init__(self, *, fallback_available: bool, send: Callable[[str, bool, str, str | None], None]) -> None:
        super().__init__(fallback_available=fallback_available)
        self._send = send

    def set(self, name: str, value: bool, *, source: str, reason: str | None = None) -> FlagChange:
        change = super().set(name, value, source=source, reason=reason)
        self._send(name, value, source, reason)
        return change

    def mirror(self, state: ServingState) -> None:
        self.use_fallback_model = state.use_fallback_model
        self.changes = dict(state.flag_changes)


class RemoteSampler:
    """The monitoring side's sampler: decides deferred captures here, arms the trigger over there.

    Importance sampling and strata by feature decide after parsing, which is
    the monitoring side's work; trigger detection watches every response, so
    its state lives with the proxy, and :meth:`activate` (an alert arming it)
    is sent there.
    """

    def __init__(self, local: Sampler, send: Callable[[str, float | None], None]) -> None:
        self.local = local
        self.strategy = local.strategy
        self.rate = local.rate
        self.needs_features = local.needs_features
        self.needs_response = local.needs_response
        self._send = send

    def decide(
        self, headers: Headers, features: Mapping[str, Any] | None = None, confidence: float | None = None
    ) -> Decision:
        return self.local.decide(headers, features, confidence)

    def observe(self, status: int, latency_seconds: float) -> None:
        """Nothing: the proxy observes every response itself."""

    def activate(self, reason: str, hold_seconds: float | None = None) -> None:
        self._send(reason, hold_seconds)
