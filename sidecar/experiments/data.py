"""What one analysis of an experiment reads: the store's sums per arm, and the proxy's counters per arm.

Every per-arm tuple and array is in the order of the definition's variants.
A metric's figures are the mergeable sums of its **analysis units** (the
assignment unit, or the request when there is none), the columns
:data:`SUMS` = (n, Σy, Σx, Σy², Σx², Σxy), where a unit's ``x`` is its
exposures and ``y`` the values attached to them; :mod:`sidecar.store.experiment`
defines them. A metric is read one of two ways:

- **per unit** (``per_unit``, outcomes posted by unit): the unit's value y;
  a proportion is the share of units with y = 1;
- **per exposure** (labels, outcomes posted by request): the ratio Σy/Σx,
  with the delta method's variance over units (:mod:`.moments`), the plain
  mean when every unit had one exposure.

:func:`sidecar.experiments.gather.gather` builds an :class:`ExperimentData`
from a store and the proxy's counters; tests build one by hand.

Usage::

    data = ExperimentData(
        since=start,
        routing=Routing(keyed=(9_000, 1_000), randomised=(90, 10)),
        captured=(4_500, 500),
        serving=(Serving(10_000, 0.010, 41.0), Serving(1_100, 0.012, 44.0)),
        metrics={"conversion": MetricData.of_totals([[4500, 450, 9000, 450, 20000, 900],
                                                     [500, 56, 1000, 56, 2200, 110]], per_unit=True)},
    )
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["SUMS", "ExperimentData", "MetricData", "Routing", "Serving"]

Floats = npt.NDArray[np.float64]

# The columns of every sums array (sidecar.store.experiment.SUMS, which this must equal).
SUMS: Final = ("n", "y", "x", "yy", "xx", "xy")


@dataclass(frozen=True, slots=True)
class Routing:
    """The router's requests per arm (:attr:`~.routing.Router.keyed` and :attr:`~.routing.Router.randomised`).

    Usage::

        Routing(keyed=tuple(router.keyed), randomised=tuple(router.randomised))
    """

    keyed: tuple[int, ...]
    randomised: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Serving:
    """One arm's serving signals, from the proxy's own counters: its requests, the share that failed (0 to 1),
    and the 95th percentile of its latency in milliseconds (NaN when it has no requests).

    Usage::

        Serving(requests=10_000, error_rate=0.01, latency_p95_ms=41.0)
    """

    requests: int
    error_rate: float
    latency_p95_ms: float


@dataclass(frozen=True, slots=True)
class MetricData:
    """One metric's sums per arm: ``total`` (arms, 6), ``segments`` name → (arms, 6), ``periods`` (k, arms, 6).

    The arrays are made read-only, so the frozen dataclass stays frozen.

    Usage::

        MetricData.of_totals([[1000, 100, 1000, 100, 1000, 100], [1000, 130, 1000, 130, 1000, 130]])
    """

    total: Floats
    segments: Mapping[str, Floats] = field(default_factory=dict)
    periods: Floats = field(default_factory=lambda: np.zeros((0, 0, len(SUMS))))
    per_unit: bool = False

    def __post_init__(self) -> None:
        arms = self.total.shape[0] if self.total.ndim == 2 else -1
        if self.total.shape != (arms, len(SUMS)):
            raise ValueError(f"total must be (arms, {len(SUMS)}), not {self.total.shape}")
        for name, sums in self.segments.items():
            if sums.shape != (arms, len(SUMS)):
                raise ValueError(f"segment {name!r} must be ({arms}, {len(SUMS)}), not {sums.shape}")
        if self.periods.size and self.periods.shape[1:] != (arms, len(SUMS)):
            raise ValueError(f"periods must be (k, {arms}, {len(SUMS)}), not {self.periods.shape}")
        for array in (self.total, self.periods, *self.segments.values()):
            array.flags.writeable = False

    @classmethod
    def of_totals(cls, total: npt.ArrayLike, *, per_unit: bool = False) -> MetricData:
        """Only the totals: no segments, no periods."""
        return cls(np.array(total, dtype=np.float64), per_unit=per_unit)


@dataclass(frozen=True, slots=True)
class ExperimentData:
    """Everything one analysis reads, per arm: see the module docstring.

    ``since`` starts the window the store's figures cover (prediction time);
    ``captured`` counts the analysis units captured per arm, for the sample
    ratio on capture; ``metrics`` holds the data of the tested metrics by
    name (a metric without data is analysed as empty).

    Usage::

        snapshot = analyse(experiment, data, now=time.time())
    """

    since: float
    routing: Routing
    captured: tuple[int, ...]
    serving: tuple[Serving, ...]
    metrics: Mapping[str, MetricData] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arms = len(self.captured)
        lengths = {len(self.routing.keyed), len(self.routing.randomised), len(self.serving)}
        if lengths != {arms}:
            raise ValueError(f"every per-arm figure needs {arms} entries, one per arm")
        for name, metric in self.metrics.items():
            if metric.total.shape[0] != arms:
                raise ValueError(f"metric {name!r} has {metric.total.shape[0]} arms, not {arms}")
