"""Routing: the arm and upstream of each request, by header, by feature or by coin; counted; cheap."""

from __future__ import annotations

import random
import subprocess
import sys
import timeit
from pathlib import Path
from typing import Any

import pytest

from sidecar.experiments.assignment import Assigner
from sidecar.experiments.definition import Experiment, experiment_from_mapping
from sidecar.experiments.routing import Route, Router

ROOT = Path(__file__).parents[2]
CHALLENGER = "http://challenger:8080"
HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"python-httpx/0.28"),
    (b"accept", b"*/*"),
    (b"content-type", b"application/json"),
    (b"content-length", b"42"),
]


def _experiment(key: str | None = "header:X-User-Id", **extra: Any) -> Experiment:
    definition: dict[str, Any] = {
        "name": "ranker-v2",
        "variants": {"control": {"weight": 0.9}, "treatment": {"weight": 0.1, "upstream": CHALLENGER}},
        "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
        "mde": 0.01,
        **extra,
    }
    if key is not None:
        definition["assignment"] = {"key": key}
    return experiment_from_mapping(definition)


def test_a_header_key_routes_each_unit_to_its_assigned_arm() -> None:
    router = Router(_experiment())
    assigner = Assigner([("control", 0.9), ("treatment", 0.1)], "ranker-v2")
    # The pinned units of test_assignment: "u-17" is control at 0.9/0.1, "émile" treatment.
    route = router.route([*HEADERS, (b"x-user-id", b"u-17")])
    assert route == Route("control", 0, None, randomised=False, unit=b"u-17")
    route = router.route([(b"x-user-id", "émile".encode()), *HEADERS])
    assert route == Route("treatment", 1, CHALLENGER, randomised=False, unit="émile".encode())
    for i in range(500):
        unit = f"user-{i}".encode()
        route = router.route([*HEADERS, (b"x-user-id", unit)])
        assert route.variant == assigner.assign(unit).variant
        assert route.upstream == (CHALLENGER if route.variant == "treatment" else None)
    assert sum(router.keyed) == 502 and router.randomised == [0, 0]
    # The first header of the name is the unit, as the sampler reads headers.
    first = router.route([(b"x-user-id", b"u-17"), (b"x-user-id", "émile".encode())])
    assert first.unit == b"u-17"


def test_every_replica_and_every_restart_routes_a_user_alike() -> None:
    # Two routers from one definition stand for two replicas; no state is shared.
    a, b = Router(_experiment(), rng=random.Random(1)), Router(_experiment(), rng=random.Random(2))
    for i in range(2_000):
        headers = [(b"x-user-id", f"u-{i}".encode())]
        assert a.route(headers) == b.route(headers)
    assert a.keyed == b.keyed
    assert a.keyed[1] == pytest.approx(200, abs=60)  # about a tenth in treatment


def test_without_the_unit_a_coin_counted_apart() -> None:
    router = Router(_experiment(), rng=random.Random(7))
    routes = [router.route(HEADERS) for _ in range(5_000)] + [router.route([(b"x-user-id", b"")]) for _ in range(5_000)]
    assert all(route.randomised and route.unit is None for route in routes)
    assert sum(router.randomised) == 10_000 and router.keyed == [0, 0]
    assert router.randomised[1] / 10_000 == pytest.approx(0.1, abs=0.015)
    # A coin's route is made once per arm: nothing is allocated for it.
    assert {id(route) for route in routes} == {id(router.route(HEADERS)) for _ in range(200)}


def test_an_experiment_without_a_key_is_a_coin_per_request() -> None:
    router = Router(_experiment(key=None), rng=random.Random(3))
    # A header that looks like a unit is not one: the definition names no key.
    routes = {router.route([(b"x-user-id", b"u-17")]).variant for _ in range(200)}
    assert routes == {"control", "treatment"}
    assert sum(router.randomised) == 200


def test_a_feature_key_takes_the_value_the_caller_parsed() -> None:
    router = Router(_experiment(key="feature:user_id"), rng=random.Random(5))
    by_header = Router(_experiment())
    assert router.needs_feature and not by_header.needs_feature
    # The same salt and weights: a user is in the same arm whether its id came as a header or a feature.
    for unit in ("u-17", "émile", "user-3"):
        assert router.route(HEADERS, feature=unit).variant == by_header.route([(b"x-user-id", unit.encode())]).variant
    # One unit, whatever JSON type carried it; the unit is its text, in UTF-8.
    assert router.route([], feature=4021) == router.route([], feature="4021") == router.route([], feature=4021.0)
    assert router.route([], feature="émile").unit == "émile".encode()
    # Headers are not read for a feature key; no value (or no unit in it) is a coin.
    assert router.route([(b"user_id", b"u-17"), (b"x-user-id", b"u-17")]).randomised
    assert router.route([], feature=None).randomised
    assert router.route([], feature=True).randomised
    assert router.route([], feature=[1, 2]).randomised
    assert sum(router.keyed) == 7 and sum(router.randomised) == 4


def test_arms_come_in_the_definitions_order_with_their_upstreams() -> None:
    experiment = experiment_from_mapping(
        {
            "name": "three",
            "variants": {
                "a": {"weight": 0.2, "upstream": "http://a:1"},
                "control": {"weight": 0.5},
                "b": {"weight": 0.3, "upstream": "http://b:2"},
            },
            "assignment": {"key": "header:x-user-id", "salt": "s"},
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.01,
        }
    )
    router = Router(experiment)
    assert [(v.name, v.upstream) for v in router.variants] == [
        ("a", "http://a:1"),
        ("control", None),
        ("b", "http://b:2"),
    ]
    seen: dict[str, set[str | None]] = {}
    for i in range(3_000):
        route = router.route([(b"x-user-id", f"u-{i}".encode())])
        assert router.variants[route.variant_index].name == route.variant
        seen.setdefault(route.variant, set()).add(route.upstream)
    assert seen == {"a": {"http://a:1"}, "control": {None}, "b": {"http://b:2"}}
    assert [round(n / 3_000, 1) for n in router.keyed] == [0.2, 0.5, 0.3]


def test_a_shadow_experiment_does_not_route() -> None:
    shadow = experiment_from_mapping(
        {
            "name": "s",
            "mode": "shadow",
            "variants": {"control": {}, "challenger": {"upstream": CHALLENGER}},
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.01,
        }
    )
    with pytest.raises(ValueError, match="shadow mode"):
        Router(shadow)


def test_a_pick_is_the_route_as_a_pair_counted_alike() -> None:
    # Two routers with the same coins: one asked for routes, the other for picks, as the proxy asks.
    by_route, by_pick = Router(_experiment(), rng=random.Random(4)), Router(_experiment(), rng=random.Random(4))
    for i in range(2_000):
        headers = [*HEADERS, (b"x-user-id", f"u-{i}".encode())] if i % 7 else HEADERS
        route = by_route.route(headers)
        assert by_pick.pick(headers) == (route.variant_index, route.unit)
    assert by_pick.keyed == by_route.keyed and by_pick.randomised == by_route.randomised
    assert sum(by_pick.randomised) == 286
    feature = Router(_experiment(key="feature:user_id"))
    assert feature.pick([], feature=4021.0) == (feature.route([], feature="4021").variant_index, b"4021")
    # A coin's pick is made once per arm, as its route is: nothing is allocated for it.
    assert len({id(by_pick.pick(HEADERS)) for _ in range(200)}) == 2


def test_the_cost_per_request_is_about_a_microsecond() -> None:
    # On the proxy's request path. About 0.5 µs a pick with a header key (0.7 µs a route), 0.2 µs for a
    # coin here (see the report); the bounds leave room for a busy machine.
    router = Router(_experiment(), rng=random.Random(1))
    keyed = [*HEADERS, (b"x-user-id", b"user-1234567890")]
    calls = 20_000
    per_call = min(timeit.repeat(lambda: router.route(keyed), number=calls, repeat=5)) / calls
    assert per_call < 10e-6
    per_pick = min(timeit.repeat(lambda: router.pick(keyed), number=calls, repeat=5)) / calls
    assert per_pick < 10e-6
    per_coin = min(timeit.repeat(lambda: router.route(HEADERS), number=calls, repeat=5)) / calls
    assert per_coin < 5e-6


def test_routing_loads_no_statistics_and_no_web() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import sidecar.experiments.routing\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "sidecar.experiments.routing" in loaded
    heavy = {"numpy", "scipy", "uvicorn", "starlette", "httptools"}
    assert not {name for name in loaded if name.partition(".")[0] in heavy}
    assert not {name for name in loaded if name.startswith(("sidecar.experiments.moments", "sidecar.drift"))}
