"""The plain records: RFC 3339 times as the prediction log writes them."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from sidecar.records import rfc3339


def reference(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize(
    "timestamp",
    [
        0.0,
        1.0,
        -1.0,
        0.9995,
        0.9999995,  # rounds up into the next second
        0.9999994,
        -0.0000005,
        -0.0000006,
        1_795_680_000.0,
        1_795_680_000.9999996,
        1_764_144_638.123,
        253_402_300_799.999,  # the last millisecond of year 9999
        -62_135_596_800.0,  # year 1, zero-padded
    ],
)
def test_rfc3339_writes_what_datetime_writes(timestamp: float) -> None:
    assert rfc3339(timestamp) == reference(timestamp)


def test_rfc3339_agrees_with_datetime_on_random_times() -> None:
    rng = random.Random(3339)
    for _ in range(20_000):
        timestamp = rng.uniform(1.7e9, 1.9e9)
        # Exactly half a microsecond either side of a millisecond exercises the rounding.
        for candidate in (timestamp, round(timestamp, 3) + rng.choice((5e-7, -5e-7)), rng.uniform(-1e10, 2.5e11)):
            assert rfc3339(candidate) == reference(candidate)


def test_rfc3339_refuses_what_datetime_refuses() -> None:
    for bad, error in ((float("nan"), ValueError), (float("inf"), OverflowError), (1e20, OverflowError)):
        with pytest.raises(error):
            rfc3339(bad)
