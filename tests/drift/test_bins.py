"""bin_labels: the bins named by their edges and categories, for people; the metrics keep their own labels."""

from __future__ import annotations

import numpy as np
import pytest

from sidecar.drift import bin_labels
from sidecar.reference import Distribution, Stats
from tests.drift.helpers import categorical, numeric


def _numeric(*edges: float) -> Distribution:
    return Distribution.numeric(edges=edges, ratios=[1.0 / (len(edges) + 1)] * (len(edges) + 1), stats=Stats(count=1))


@pytest.mark.parametrize(
    ("edges", "labels"),
    [
        ((30.0, 40.0, 90.0), ("≤ 30", "30–40", "40–90", "> 90")),
        # Quantile noise is rounded away: the smallest gap (10) needs no decimals.
        ((29.999999999, 40.0000000001, 50.0), ("≤ 30", "30–40", "40–50", "> 50")),
        # Two significant digits of the smallest gap (0.11): two decimals, trailing zeros dropped.
        ((0.1234567, 0.2345678, 0.5), ("≤ 0.12", "0.12–0.23", "0.23–0.5", "> 0.5")),
        ((23.45, 28.05, 31.9), ("≤ 23.4", "23.4–28.1", "28.1–31.9", "> 31.9")),
        ((35_210.55, 42_000.2, 61_873.9), ("≤ 35211", "35211–42000", "42000–61874", "> 61874")),
        # A negative edge: the dash is spaced, so "-5" never reads as a range "−5".
        ((-10.0, -5.0, 0.0), ("≤ -10", "-10 – -5", "-5 – 0", "> 0")),
        ((-0.0001, 0.5), ("≤ 0", "0–0.5", "> 0.5")),  # never "-0"
        ((1e-7, 2e-7), ("≤ 0.0000001", "0.0000001–0.0000002", "> 0.0000002")),
        ((1e-13, 2e-13), ("≤ 1e-13", "1e-13–2e-13", "> 2e-13")),  # beyond 12 decimals: the shortest repr
        ((42.123456,), ("≤ 42.1", "> 42.1")),  # one edge: three significant digits of its own size
        ((), ("all values",)),
    ],
)
def test_numeric_bins_are_named_by_their_edges(edges: tuple[float, ...], labels: tuple[str, ...]) -> None:
    assert bin_labels(_numeric(*edges)) == labels


def test_quantile_edges_of_real_data_read_well_and_stay_distinct() -> None:
    rng = np.random.default_rng(1)
    for values in (rng.normal(50.0, 10.0, 20_000), rng.lognormal(10.0, 1.0, 20_000), rng.uniform(0, 1e-3, 20_000)):
        dist = numeric(values)
        labels = bin_labels(dist)
        assert len(labels) == dist.bins == len(set(labels))
        # No float noise: no label carries more than a handful of significant digits.
        assert all(len(part.strip("≤> -")) <= 12 for label in labels for part in label.split("–"))


def test_categories_are_named_by_their_value_and_the_rest_is_other() -> None:
    assert bin_labels(categorical(["DE", "FR", "US"], [0.5, 0.3, 0.2], 100)) == ("DE", "FR", "US", "(other)")
    # A category spelt like a special name, or empty, never makes two bins read alike.
    odd = categorical(["(other)", "", "(empty)"], [0.3, 0.3, 0.3], 100)
    labels = bin_labels(odd)
    assert labels == ("(other)", "((empty))", "(empty)", "((other))")
    assert len(set(labels)) == len(labels)
