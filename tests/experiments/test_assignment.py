"""Assignment: the same unit gets the same arm in any process, the arms get their weights, and it is cheap."""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import random
import subprocess
import sys
import timeit
from bisect import bisect_right
from pathlib import Path

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from sidecar.experiments.assignment import Arm, Assigner, cut
from sidecar.experiments.definition import experiment_from_mapping

ROOT = Path(__file__).parents[2]
HALVES = [("control", 0.5), ("treatment", 0.5)]


def test_the_bucket_is_the_documented_keyed_blake2b() -> None:
    # Pinned values: a change to the hash would move every user to another arm, so it must show here.
    assigner = Assigner(HALVES, "ranker-v2")
    assert assigner.bucket("u-17") == 0.858066209965058
    assert assigner.bucket("alice") == 0.468548750533882
    assert assigner.bucket("émile") == 0.9114379701164668  # UTF-8
    assert assigner.bucket(b"\xff\xfe") == 0.5457881115486927  # a header's raw bytes
    # And the formula of the docstring, written out independently.
    digest = hashlib.blake2b(b"u-17", digest_size=8, key=b"ranker-v2").digest()
    assert assigner.bucket("u-17") == (int.from_bytes(digest, "big") >> 11) / 2**53
    # A salt longer than BLAKE2b's 64-byte key is hashed to 64 bytes first, as HMAC does.
    long_salt = "x" * 100
    key = hashlib.blake2b(long_salt.encode(), digest_size=64).digest()
    digest = hashlib.blake2b(b"u-17", digest_size=8, key=key).digest()
    assert Assigner(HALVES, long_salt).bucket("u-17") == (int.from_bytes(digest, "big") >> 11) / 2**53


def test_arms_follow_the_cumulative_weights_in_order() -> None:
    assigner = Assigner(HALVES, "ranker-v2")
    assert assigner.assign("u-17") == Arm("treatment", 1, False)  # 0.858 ≥ 0.5
    assert assigner.assign("alice") == Arm("control", 0, False)  # 0.469 < 0.5
    # The same unit, the same arm, every time; str and its UTF-8 bytes are the same unit.
    assert {assigner.assign("u-17") for _ in range(100)} == {Arm("treatment", 1, False)}
    assert assigner.assign(b"alice") == assigner.assign("alice")
    # Another salt is another experiment: the unit's bucket changes.
    assert Assigner(HALVES, "ranker-v3").bucket("u-17") != assigner.bucket("u-17")
    # 0.9 / 0.1: control covers [0, 0.9).
    skewed = Assigner([("control", 0.9), ("treatment", 0.1)], "ranker-v2")
    assert skewed.assign("u-17").variant == "control"
    assert skewed.assign("émile").variant == "treatment"


def _u(digest: int) -> float:
    """The docstring's u of a 64-bit digest, written out independently."""
    return (digest >> 11) / 2**53


def test_a_cut_is_the_first_digest_whose_u_is_not_below_its_bound() -> None:
    rng = random.Random(11)
    bounds = [0.5, 1 / 3, 0.1, 0.9, 2.0**-53, 1e-300, math.nextafter(1.0, 0.0), *(rng.random() for _ in range(5_000))]
    for bound in bounds:
        digest = cut(bound)
        assert digest is not None and len(digest) == 8
        first = int.from_bytes(digest, "big")
        # Exactly at the boundary: the digest before it is below the bound, it is not.
        assert _u(first - 1) < bound <= _u(first)
    # Every u is below 1: no digest reaches it.
    assert cut(1.0) is None


def test_the_index_is_the_arm_of_the_bucket() -> None:
    # index() bisects the digest among the cuts instead of u among the bounds: the same arm for every unit.
    cases = [
        HALVES,
        [("control", 0.9), ("treatment", 0.1)],
        [("a", 1.0), ("b", 2.0)],  # thirds: bounds that are no dyadic fraction
        [("a", 0.2), ("b", 0.3), ("c", 0.5)],
        [("a", 0.1), ("b", 0.1), ("c", 0.8)],
        [("a", 1.0), ("b", 1e-18)],  # the first bound rounds to 1: every unit is in a
    ]
    for weights in cases:
        assigner = Assigner(weights, "ranker-v2")
        total = sum(w for _, w in weights)
        # Added in order, as the assigner adds them (sum() may compensate rounding on newer Pythons).
        bounds = list(itertools.accumulate(w / total for _, w in weights))
        bounds[-1] = 1.0
        for i in range(4_000):
            unit = f"user-{i}".encode()
            assert assigner.index(unit) == bisect_right(bounds, assigner.bucket(unit)) == assigner.assign(unit).index
    assert {Assigner([("a", 1.0), ("b", 1e-18)], "s").index(f"u-{i}".encode()) for i in range(1_000)} == {0}


def test_every_process_agrees_whatever_its_hash_seed() -> None:
    # Two replicas, or one after a restart: fresh interpreters with different PYTHONHASHSEEDs.
    code = (
        "from sidecar.experiments.assignment import Assigner\n"
        "a = Assigner([('control', 0.9), ('treatment', 0.1)], 'ranker-v2')\n"
        "print(' '.join(a.assign(f'u-{i}').variant[0] for i in range(200)))\n"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for seed in ("1", "2", "random")
    }
    here = Assigner([("control", 0.9), ("treatment", 0.1)], "ranker-v2")
    assert runs == {" ".join(here.assign(f"u-{i}").variant[0] for i in range(200)) + "\n"}


def test_units_spread_by_the_weights_with_no_sample_ratio_mismatch() -> None:
    weights = [("a", 0.2), ("b", 0.3), ("c", 0.5)]
    assigner = Assigner(weights, "spread")
    counts = np.bincount([assigner.assign(f"user-{i}").index for i in range(60_000)], minlength=3)
    assert stats.chisquare(counts, [0.2 * 60_000, 0.3 * 60_000, 0.5 * 60_000]).pvalue > 0.001
    # And the buckets are uniform on [0, 1).
    buckets = [assigner.bucket(f"user-{i}") for i in range(20_000)]
    assert stats.kstest(buckets, "uniform").pvalue > 0.001
    assert 0.0 <= min(buckets) and max(buckets) < 1.0


def test_without_a_key_a_coin_by_the_weights_flagged_as_such() -> None:
    assigner = Assigner([("control", 0.9), ("treatment", 0.1)], "salt", rng=random.Random(7))
    arms = [assigner.assign(None) for _ in range(20_000)] + [assigner.assign("") for _ in range(20_000)]
    assert all(arm.randomised for arm in arms)
    share = sum(arm.variant == "treatment" for arm in arms) / len(arms)
    assert share == pytest.approx(0.1, abs=0.01)
    assert assigner.assign("u-1").randomised is False


def test_of_an_experiment() -> None:
    experiment = experiment_from_mapping(
        {
            "name": "ranker-v2",
            "variants": {"control": {"weight": 0.9}, "treatment": {"weight": 0.1, "upstream": "http://b"}},
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.01,
        }
    )
    # The salt defaults to the name, so this is the 0.9/0.1 assigner of the test above.
    assert Assigner.of(experiment).assign("émile") == Arm("treatment", 1, False)
    shadow = experiment_from_mapping(
        {
            "name": "s",
            "mode": "shadow",
            "variants": {"control": {}, "challenger": {"upstream": "http://b"}},
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.01,
        }
    )
    with pytest.raises(ValueError, match="shadow mode"):
        Assigner.of(shadow)
    with pytest.raises(ValueError, match="positive weights"):
        Assigner([("a", 1.0), ("b", 0.0)], "s")


def test_the_cost_per_call_is_a_microsecond_or_so() -> None:
    # It runs on the request path. Here about 0.4 µs (see the report); the bound leaves room for a busy machine.
    assigner = Assigner([("control", 0.9), ("treatment", 0.1)], "ranker-v2")
    unit = b"user-1234567890"
    calls = 20_000
    per_call = min(timeit.repeat(lambda: assigner.assign(unit), number=calls, repeat=5)) / calls
    assert per_call < 10e-6
    # The arms are allocated once: a call returns one of them, not a new object.
    assert assigner.assign(unit) is assigner.assign(unit)
