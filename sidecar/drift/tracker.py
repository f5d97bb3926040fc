"""The drift tracker: live traffic counted into windows over the reference's bins.

One :class:`Window` each for the features, the model outputs the profile
describes (``prediction`` against ``record.prediction``, ``confidence``
against ``record.confidence``; other outputs have no record field and are
not tracked), and the labels (against ``profile.target``). What the profile
does not describe is not tracked: that window is None.

Time comes from the injected ``clock`` (wall-clock seconds, ``time.time`` by
default), read once per batch: every record of a batch counts in the slice
of the moment it is counted, not of its own timestamp. Records reach the
tracker within milliseconds of their request, far less than a slice, and a
client's skewed or replayed timestamps cannot then put counts in slices that
have already expired, nor in the future. Labels arrive hours late by design
and count when they arrive: label drift is about the labels coming in now.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from sidecar.drift.window import Window
from sidecar.records import PredictionRecord
from sidecar.reference import Distribution, ReferenceProfile

__all__ = ["DriftTracker", "Source"]

Source = Literal["feature", "output", "label"]
_OUTPUTS = ("prediction", "confidence")  # the profile's outputs that records carry, by field name


class DriftTracker:
    """Weighted per-bin counts of live traffic over a sliding window; :func:`evaluate` turns them into drift.

    Usage::

        tracker = DriftTracker(profile, window_seconds=3600, slice_seconds=60, min_samples=200)
        monitor.subscribe(tracker.update)       # records from the monitor worker
        tracker.update_labels([("spam", 1.0)])  # (label, weight) pairs from the labels module
        snapshot = evaluate(tracker)            # every SIDECAR_EVAL_INTERVAL_SECONDS
        for source, name, bin_label, total in tracker.bin_observations():
            ...                                 # the mlsidecar_feature_bin_observations_total counters

    ``window_seconds`` must be a whole number of slices. ``min_samples`` is
    the fewest non-null values (raw, not weighted) on each side, window and
    reference, for a verdict. ``drift_share`` is the share of drifted
    features above which the dataset as a whole has drifted.
    """

    def __init__(
        self,
        profile: ReferenceProfile,
        *,
        window_seconds: float = 3600.0,
        slice_seconds: float = 60.0,
        min_samples: int = 200,
        drift_share: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (math.isfinite(slice_seconds) and slice_seconds > 0):
            raise ValueError(f"slice_seconds must be a positive number of seconds, not {slice_seconds!r}")
        slices = window_seconds / slice_seconds
        if not (math.isfinite(slices) and slices >= 1 and slices == round(slices)):
            raise ValueError(
                f"window_seconds ({window_seconds!r}) must be a whole multiple of slice_seconds ({slice_seconds!r})"
            )
        if min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, not {min_samples!r}")
        if not 0.0 <= drift_share < 1.0:
            raise ValueError(f"drift_share must be in [0, 1), not {drift_share!r}")
        self.profile = profile
        self.window_seconds = float(window_seconds)
        self.slice_seconds = float(slice_seconds)
        self.min_samples = min_samples
        self.drift_share = drift_share
        self.clock = clock
        now = clock()

        def window(channels: Sequence[tuple[str, Distribution]]) -> Window | None:
            if not channels:
                return None
            return Window(channels, slices=round(slices), slice_seconds=float(slice_seconds), now=now)

        self.features = window(list(profile.features.items()))
        self.outputs = window([(name, profile.outputs[name]) for name in _OUTPUTS if name in profile.outputs])
        self.labels = window([] if profile.target is None else [("label", profile.target)])
        self._feature_names = () if self.features is None else self.features.feed_order
        self._output_names = () if self.outputs is None else self.outputs.feed_order

    def update(self, records: Sequence[PredictionRecord]) -> None:
        """Count a batch of records: O(features) per record, pure Python."""
        if not records:
            return
        now = self.clock()
        features, outputs = self.features, self.outputs
        names, output_names = self._feature_names, self._output_names
        if features is not None:
            features.advance(now)
        if outputs is not None:
            outputs.advance(now)
        for record in records:
            weight = record.weight
            if features is not None:
                features.add(map(record.features.get, names), weight)
            if outputs is not None:
                outputs.add(map(record.__getattribute__, output_names), weight)

    def update_labels(self, labels: Sequence[tuple[Any, float]]) -> None:
        """Count ground-truth labels, each with its record's weight. Without a profile target, ignored."""
        window = self.labels
        if window is None or not labels:
            return
        window.advance(self.clock())
        for value, weight in labels:
            window.add((value,), weight)

    def bin_observations(self) -> Iterator[tuple[Source, str, str, float]]:
        """Weighted observations per bin since start: ``(source, name, bin label, total)``, each total monotonic.

        Cheap enough for scrape time: one tuple per bin, read from the live counts.
        """
        sources: tuple[tuple[Source, Window | None], ...] = (
            ("feature", self.features),
            ("output", self.outputs),
            ("label", self.labels),
        )
        for source, window in sources:
            if window is not None:
                for channel, label, total in window.observations():
                    yield source, channel.name, label, total
