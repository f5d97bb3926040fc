"""Sampling strategies, over simulated traffic with a controlled clock.

Kept counts are checked against 99.9% binomial intervals. When ``p`` varies
from request to request (stratified, importance), the count kept is a sum of
Bernoulli draws with different ``p`` (Poisson-binomial); its variance is at
most that of a binomial with the same mean, so the binomial interval at the
mean ``p`` is a conservative check.
"""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

import sidecar.sampling
from sidecar.sampling import (
    ERROR_BURST,
    LATENCY,
    STRATEGIES,
    ImportanceSampler,
    RandomSampler,
    Sampler,
    StratifiedSampler,
    TriggerSampler,
    build_sampler,
    key_uniform,
    parse_source,
)

N = 20_000


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def assert_binomial(kept: int, n: int, p: float) -> None:
    low, high = stats.binom.interval(0.999, n, p)
    assert low <= kept <= high, f"kept {kept} of {n}, outside the 99.9% interval [{low}, {high}] at p={p:.5f}"


def segment(value: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"model"), (b"content-type", b"application/json"), (b"x-segment", value)]


def test_exports() -> None:
    assert sidecar.sampling.__all__ == [
        "STRATEGIES",
        "ERROR_BURST",
        "LATENCY",
        "Strategy",
        "Decision",
        "Sampler",
        "RandomSampler",
        "StratifiedSampler",
        "ImportanceSampler",
        "TriggerSampler",
        "build_sampler",
        "parse_source",
        "key_uniform",
    ]
    for name in sidecar.sampling.__all__:
        assert getattr(sidecar.sampling, name) is not None


# --- sources and keys ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("header:X-Segment", ("header", "x-segment")),
        (" Header : x-user-id ", ("header", "x-user-id")),
        ("feature:country", ("feature", "country")),
        ("feature:Country Code", ("feature", "Country Code")),  # feature names are kept as given
        ("feature:a:b", ("feature", "a:b")),
    ],
)
def test_parse_source(text: str, expected: tuple[str, str]) -> None:
    assert parse_source(text) == expected


@pytest.mark.parametrize("text", ["", "country", "header:", "feature: ", "cookie:session", "header:x segment"])
def test_parse_source_rejects_with_a_usable_message(text: str) -> None:
    with pytest.raises(ValueError, match=r"header:|header name"):
        parse_source(text)


def test_key_uniform_is_pinned_and_uniform() -> None:
    # Pinned: replicas and restarts must agree, so the function may never change.
    assert key_uniform(b"user-1") == 0.897671307685291
    assert key_uniform(b"") == 0.0
    # Sequential ids, the worst case for a linear hash, still spread evenly.
    u = np.array([key_uniform(f"user-{i}".encode()) for i in range(N)])
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.histogram(u, bins=20, range=(0.0, 1.0))[0]
    assert stats.chisquare(counts).pvalue > 0.001
    assert_binomial(int((u < 0.1).sum()), N, 0.1)


# --- rates and edges ----------------------------------------------------------


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5])
def test_random_keeps_its_rate(rate: float) -> None:
    sampler = RandomSampler(rate, rng=random.Random(1))
    decisions = [sampler.decide(segment(b"eu")) for _ in range(N)]
    assert {p for _, p in decisions} == {rate}
    assert_binomial(sum(keep for keep, _ in decisions), N, rate)


def make(strategy: str, rate: float, seed: int = 7) -> Sampler:
    return build_sampler(
        strategy, rate=rate, stratify_by="header:x-segment", clock=FakeClock(), rng=random.Random(seed)
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_rate_zero_keeps_nothing_and_rate_one_keeps_everything(strategy: str) -> None:
    off, full = make(strategy, 0.0), make(strategy, 1.0)
    for sampler in (off, full):
        # Everything that would raise p: a trigger, a new stratum, low confidence.
        sampler.activate("incident")
        for _ in range(5):
            sampler.observe(503, 30.0)
    for i in range(10_000):
        headers = segment(b"%d" % (i % 50))
        assert off.decide(headers, confidence=0.3)[0] is False
        keep, p = full.decide(headers, confidence=i / 10_000)
        assert keep and p == 1.0


@pytest.mark.parametrize("rate", [-0.1, 1.5, math.nan])
def test_rate_out_of_range_is_rejected(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be from 0 to 1"):
        RandomSampler(rate)


# --- sampling keys ------------------------------------------------------------


def test_same_key_same_decision_and_rate_over_keys() -> None:
    sampler = RandomSampler(0.3, key="header:x-user-id", rng=random.Random(2))
    users = [f"user-{i}".encode() for i in range(N)]
    decided = {user: sampler.decide([(b"x-user-id", user)]) for user in users}
    for user in users[:1000]:
        assert sampler.decide([(b"accept", b"*/*"), (b"x-user-id", user)]) == decided[user]
    # p is still the probability over keys, and the weight still 1/p.
    assert {p for _, p in decided.values()} == {0.3}
    assert_binomial(sum(keep for keep, _ in decided.values()), N, 0.3)


def test_a_key_kept_at_some_p_is_kept_at_every_larger_one() -> None:
    low = RandomSampler(0.1, key="header:x-user-id")
    high = ImportanceSampler(0.1, key="header:x-user-id")
    for i in range(N):
        headers = [(b"x-user-id", b"%d" % i)]
        if low.decide(headers)[0]:
            assert high.decide(headers, confidence=0.8)[0]


def test_feature_key_hashes_like_the_header_and_needs_features() -> None:
    by_header = RandomSampler(0.5, key="header:x-user-id")
    by_feature = RandomSampler(0.5, key="feature:user_id")
    assert not by_header.needs_features and by_feature.needs_features
    for i in range(1000):
        assert by_feature.decide([], {"user_id": i}) == by_header.decide([(b"x-user-id", str(i).encode())])


def test_requests_without_the_key_are_drawn_at_random() -> None:
    sampler = RandomSampler(0.2, key="header:x-user-id", rng=random.Random(3))
    kept = sum(sampler.decide(segment(b"eu"))[0] for _ in range(N))
    assert_binomial(kept, N, 0.2)


# --- stratified ---------------------------------------------------------------

STRATA = {b"common": 0.899, b"usual": 0.09, b"rare": 0.01, b"tiny": 0.001}
MEANS = {b"common": 0.0, b"usual": 5.0, b"rare": 50.0, b"tiny": -20.0}


M = 10  # the minimum per stratum and window


def simulate_strata(seed: int, rate: float = 0.02) -> list[tuple[bytes, float, bool, float, int]]:
    """100 requests a second over ten 60 s windows: about 5400, 540, 60 and 6 a window per stratum.

    Returns (stratum, x, keep, p, window) per request.
    """
    rng = np.random.default_rng(seed)
    clock = FakeClock(0.0)
    sampler = StratifiedSampler(rate, by="header:x-segment", min_per_window=M, clock=clock, rng=random.Random(seed))
    names = list(STRATA)
    shares = np.array([STRATA[s] for s in names])
    n = 60_000
    picks = rng.choice(len(names), size=n, p=shares / shares.sum())
    noise = rng.normal(0.0, 1.0, size=n)
    out = []
    for i in range(n):
        clock.now = i * 0.01
        stratum = names[picks[i]]
        keep, p = sampler.decide(segment(stratum))
        out.append((stratum, MEANS[stratum] + float(noise[i]), keep, p, int(clock.now // 60)))
    return out


def test_stratified_kept_share_within_binomial_interval() -> None:
    out = simulate_strata(11)
    expected = sum(p for *_, p, _ in out)
    assert_binomial(sum(keep for _, _, keep, _, _ in out), len(out), expected / len(out))


def test_stratified_keeps_a_one_percent_stratum_at_its_minimum() -> None:
    out = simulate_strata(12)
    arrivals: Counter[tuple[bytes, int]] = Counter()
    kept: Counter[tuple[bytes, int]] = Counter()
    for stratum, _, keep, _, window in out:
        arrivals[stratum, window] += 1
        kept[stratum, window] += keep
    for (stratum, window), n in arrivals.items():
        assert kept[stratum, window] >= min(M, n)
    for window in range(10):
        # About 60 arrivals a window: at least m kept, where the base rate would keep 1.2.
        assert arrivals[b"rare", window] > M
        assert kept[b"rare", window] >= M
    rare = [p for stratum, _, _, p, _ in out if stratum == b"rare"]
    common = [p for stratum, _, _, p, _ in out if stratum == b"common"]
    assert np.mean(rare) > 5 * np.mean(common)
    # The common stratum is sampled at about the base rate once past its first m.
    assert np.median(common) == 0.02


def test_stratified_weighted_mean_recovers_the_true_mean() -> None:
    out = simulate_strata(13)
    truth = float(np.mean([x for _, x, *_ in out]))
    kept = [(x, p) for _, x, keep, p, _ in out if keep]
    weighted = sum(x / p for x, p in kept) / sum(1 / p for _, p in kept)
    naive = float(np.mean([x for x, _ in kept]))
    assert abs(weighted - truth) < 0.3  # about 4.5 standard errors
    assert abs(naive - truth) > 2  # the over-sampled rare strata bias the plain mean


def test_stratified_falling_traffic_still_yields_the_minimum() -> None:
    clock = FakeClock(0.0)
    sampler = StratifiedSampler(0.0001, by="header:x-segment", min_per_window=10, clock=clock, rng=random.Random(4))
    for i in range(10_000):
        clock.now = i * 0.006
        sampler.decide(segment(b"eu"))
    # The next window has 20 arrivals where the last had 10,000.
    kept = 0
    for i in range(20):
        clock.now = 60.0 + i
        kept += sampler.decide(segment(b"eu"))[0]
    assert kept >= 10


def test_stratified_new_stratum_surge_is_thinned_within_the_window() -> None:
    clock = FakeClock(0.0)
    sampler = StratifiedSampler(0.001, by="header:x-segment", min_per_window=10, clock=clock, rng=random.Random(5))
    decisions = [sampler.decide(segment(b"new")) for _ in range(N)]
    ps = [p for _, p in decisions]
    assert ps[:10] == [1.0] * 10
    assert ps[10] == pytest.approx(10 / 11)
    kept = sum(keep for keep, _ in decisions)
    assert_binomial(kept, N, sum(ps) / N)
    assert kept < 200  # about 10 * (1 + ln(2000)) = 86, not 20,000


def test_stratified_with_a_key_keeps_the_minimum_and_the_key_decides_the_rest() -> None:
    clock = FakeClock(0.0)
    sampler = StratifiedSampler(0.0001, by="header:x-segment", min_per_window=5, key="header:x-user-id", clock=clock)
    users = [b"u%d" % i for i in range(N)]
    decisions = [sampler.decide([(b"x-segment", b"eu"), (b"x-user-id", user)]) for user in users]
    assert all(keep for keep, _ in decisions[:5])
    for user, (keep, p) in zip(users[5:], decisions[5:], strict=True):
        assert keep == (key_uniform(user) < p)


def test_stratified_by_feature() -> None:
    clock = FakeClock(0.0)
    sampler = StratifiedSampler(0.5, by="feature:country", min_per_window=1, clock=clock)
    assert sampler.needs_features and not sampler.needs_response
    sampler.decide([], {"country": "NZ"})
    sampler.decide([], {"country": ["a", "list"]})  # unhashable: keyed by its repr
    sampler.decide([], {"country": math.nan})
    sampler.decide([], {"country": float("nan")})  # every NaN is one stratum
    sampler.decide([], {"age": 3})  # missing: the stratum None
    sampler.decide([], None)
    assert sampler.strata() == ["NZ", "['a', 'list']", "nan", None]


def test_strata_are_bounded_and_stale_ones_make_room() -> None:
    clock = FakeClock(0.0)
    sampler = StratifiedSampler(0.01, by="header:x-segment", max_strata=3, min_per_window=2, clock=clock)
    for value in (b"a", b"b", b"c", b"d", b"e"):
        sampler.decide(segment(value))
    assert sampler.strata() == [b"a", b"b", b"c"]
    # d and e share the stratum "other": its third arrival is past the minimum of 2.
    assert sampler.decide(segment(b"f"))[1] < 1.0
    # Two windows later a, b and c are stale, and new values take their place.
    clock.now = 120.0
    sampler.decide(segment(b"g"))
    assert sampler.strata() == [b"g"]


# --- importance ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [(1.0, 0.05), (0.99, 0.069), (0.95, 0.145), (0.9, 0.24), (0.75, 0.525), (0.5, 1.0), (0.2, 1.0), (1.2, 0.05)],
)
def test_importance_curve(confidence: float, expected: float) -> None:
    assert ImportanceSampler(0.05).probability(confidence) == pytest.approx(expected)


def test_importance_curve_shape_and_unknown_confidence() -> None:
    squared = ImportanceSampler(0.05, keep_all_below=0.0, exponent=2.0)
    assert squared.probability(0.5) == pytest.approx(0.05 + 0.95 * 0.25)
    assert squared.probability(0.0) == 1.0
    assert squared.probability(None) == 0.05
    assert squared.probability(math.nan) == 0.05
    assert squared.needs_response and not squared.needs_features


def simulate_importance(seed: int, rate: float = 0.05) -> list[tuple[float, float, bool, float]]:
    """Confidences mostly high (Beta(8, 1.5)), and a feature that is larger where the model is unsure."""
    rng = np.random.default_rng(seed)
    sampler = ImportanceSampler(rate, rng=random.Random(seed))
    confidences = 0.5 + 0.5 * rng.beta(8.0, 1.5, size=N)
    xs = 10.0 * (1.0 - confidences) + rng.normal(0.0, 1.0, size=N)
    return [
        (float(c), float(x), *sampler.decide([], confidence=float(c))) for c, x in zip(confidences, xs, strict=True)
    ]


def test_importance_kept_share_within_binomial_interval() -> None:
    out = simulate_importance(21)
    assert_binomial(sum(keep for _, _, keep, _ in out), N, sum(p for *_, p in out) / N)


def test_importance_keeps_low_confidence_more_often() -> None:
    out = simulate_importance(22)
    low = [keep for c, _, keep, _ in out if c < 0.8]  # p from 0.43 to 1
    high = [keep for c, _, keep, _ in out if c > 0.95]  # p from 0.05 to 0.145
    assert len(low) > 500 and len(high) > 5000
    assert np.mean(low) > 0.4 > 0.15 > np.mean(high)


def test_importance_weighted_mean_recovers_the_true_mean() -> None:
    out = simulate_importance(23)
    truth = float(np.mean([x for _, x, _, _ in out]))
    kept = [(x, p) for _, x, keep, p in out if keep]
    ht = sum(x / p for x, p in kept) / N
    hajek = sum(x / p for x, p in kept) / sum(1 / p for _, p in kept)
    naive = float(np.mean([x for x, _ in kept]))
    assert abs(ht - truth) < 0.1 and abs(hajek - truth) < 0.1  # about 5 standard errors
    assert naive - truth > 0.2  # the kept records lean to the uncertain, larger x (by 0.3)


# --- trigger ------------------------------------------------------------------


def run(sampler: Sampler, clock: FakeClock, n: int, *, status: int = 200) -> list[tuple[bool, float]]:
    """n requests 10 ms apart, each answered with ``status`` in 5 ms."""
    out = []
    for _ in range(n):
        clock.now += 0.01
        out.append(sampler.decide(segment(b"eu")))
        sampler.observe(status, 0.005)
    return out


def test_trigger_switches_to_everything_during_a_5xx_burst_and_back_after_the_hold() -> None:
    clock = FakeClock()
    sampler = TriggerSampler(0.05, hold_seconds=300.0, clock=clock, rng=random.Random(31))
    before = run(sampler, clock, N)
    assert_binomial(sum(keep for keep, _ in before), N, 0.05)
    assert sampler.active_reason is None

    run(sampler, clock, 5, status=503)  # five 5xx within 50 ms: a burst
    assert sampler.active_reason == ERROR_BURST
    during = run(sampler, clock, N // 2, status=500)  # errors go on for 100 s
    assert during == [(True, 1.0)] * (N // 2)
    hold = run(sampler, clock, N)  # recovered; 200 s of the 300 s hold
    assert all(keep and p == 1.0 for keep, p in hold[: N - 100])

    clock.now += 300.0
    assert sampler.active_reason is None
    after = run(sampler, clock, N)
    assert_binomial(sum(keep for keep, _ in after), N, 0.05)
    assert {p for _, p in after} == {0.05}
    assert sampler.activations == {ERROR_BURST: 1}


def test_trigger_scattered_errors_do_not_fire() -> None:
    clock = FakeClock()
    sampler = TriggerSampler(0.05, error_count=5, error_window_seconds=10.0, clock=clock)
    for _ in range(100):
        clock.now += 2.6  # five errors span 10.4 s
        sampler.observe(502, 0.01)
        sampler.observe(200, 0.01)
    assert sampler.active_reason is None and sampler.activations == {}


def test_trigger_on_latency() -> None:
    clock = FakeClock()
    sampler = TriggerSampler(0.05, latency_seconds=1.0, hold_seconds=60.0, clock=clock)
    sampler.observe(200, 1.0)
    assert sampler.active_reason is None
    sampler.observe(200, 1.01)
    assert sampler.active_reason == LATENCY
    clock.now += 59.9
    assert sampler.decide([]) == (True, 1.0)
    clock.now += 0.2
    assert sampler.active_reason is None


def test_trigger_activate_hook() -> None:
    clock = FakeClock()
    sampler = TriggerSampler(0.0001, hold_seconds=300.0, clock=clock, rng=random.Random(32))
    sampler.activate("psi_country", hold_seconds=30.0)
    sampler.activate("psi_country", hold_seconds=10.0)  # extends, never shortens
    assert sampler.active_reason == "psi_country"
    assert all(keep for keep, _ in run(sampler, clock, 2900))
    clock.now += 1.5
    assert sampler.active_reason is None
    sampler.activate("accuracy")  # the default hold
    clock.now += 299.0
    assert sampler.active_reason == "accuracy"
    assert sampler.activations == {"psi_country": 1, "accuracy": 1}
    with pytest.raises(ValueError, match="hold_seconds"):
        sampler.activate("x", hold_seconds=-1.0)


def test_other_strategies_ignore_trigger_feeds() -> None:
    sampler = RandomSampler(0.0)
    sampler.activate("incident")
    sampler.observe(500, 99.0)
    assert sampler.decide([]) == (False, 0.0)


# --- factory ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "cls", "needs_features", "needs_response"),
    [
        ("random", RandomSampler, False, False),
        ("stratified", StratifiedSampler, False, False),
        ("importance", ImportanceSampler, False, True),
        ("trigger", TriggerSampler, False, False),
    ],
)
def test_build_sampler(strategy: str, cls: type, needs_features: bool, needs_response: bool) -> None:
    sampler = build_sampler(strategy, rate=0.1, stratify_by="header:x-segment")
    assert isinstance(sampler, cls)
    assert (sampler.strategy, sampler.rate) == (strategy, 0.1)
    assert (sampler.needs_features, sampler.needs_response) == (needs_features, needs_response)
    keyed = build_sampler(strategy, rate=0.1, stratify_by="header:x-segment", key="feature:user_id")
    assert keyed.needs_features


def test_build_sampler_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown sampling strategy 'reservoir'; expected one of random, stratified"):
        build_sampler("reservoir", rate=0.1)
    with pytest.raises(ValueError, match="needs stratify_by"):
        build_sampler("stratified", rate=0.1)
    with pytest.raises(ValueError, match="not a valid header name"):
        build_sampler("random", rate=0.1, key="header:x user")
    with pytest.raises(ValueError, match="min_per_window must be from 0"):
        build_sampler("stratified", rate=0.1, stratify_by="header:x", stratum_min_per_window=-1)
    with pytest.raises(ValueError, match="keep_all_below must be from 0 to 0.99, got 1.0"):
        build_sampler("importance", rate=0.1, importance_keep_all_below=1.0)
    with pytest.raises(ValueError, match="hold_seconds must be from 0 to 86400, got inf"):
        build_sampler("trigger", rate=0.1, trigger_hold_seconds=math.inf)


def test_per_decision_state_is_bounded() -> None:
    """Strata counts and trigger history stay bounded over many distinct values."""
    clock = FakeClock()
    sampler = StratifiedSampler(0.1, by="header:x-segment", max_strata=50, clock=clock)
    for i in range(N):
        clock.now += 0.05
        sampler.decide(segment(b"%d" % i))
        assert len(sampler.strata()) <= 50
