"""The request path can take the assignment without numpy, scipy or the statistics."""

from __future__ import annotations

from tests.test_layering import _loaded


def test_the_assignment_loads_no_statistics() -> None:
    loaded = _loaded("sidecar.experiments.assignment")
    assert "sidecar.experiments.assignment" in loaded
    heavy = {"numpy", "scipy", "sidecar.experiments.moments", "sidecar.experiments.compare"}
    assert not {name for name in loaded if name.partition(".")[0] in heavy or name in heavy}
    # The web stays out too: the definition is a file format, not a server part.
    assert not {name for name in loaded if name.split(".")[0] in ("uvicorn", "starlette", "httptools")}


def test_the_wiring_modules_load_no_scipy() -> None:
    # The serving process builds the same components as the monitoring one and must not pay for scipy
    # (tests/test_layering.py): the runner, the API and the metrics load the statistics only when they analyse
    # or render an analysis, which only the monitoring process does.
    modules = ("runner", "metrics", "api", "traffic", "tap", "pairing", "shadow_runner")
    loaded = _loaded(*(f"sidecar.experiments.{module}" for module in modules))
    assert {f"sidecar.experiments.{module}" for module in modules} <= loaded
    assert not {name for name in loaded if name.partition(".")[0] == "scipy"}
    assert "sidecar.experiments.analysis" not in loaded and "sidecar.experiments.view" not in loaded
    assert not {f"sidecar.experiments.{module}" for module in ("shadow_analysis", "shadow_view")} & loaded


def test_the_serving_sides_counters_load_no_numpy() -> None:
    # The tap runs on the serving loop, beside the traffic counters.
    loaded = _loaded("sidecar.experiments.traffic", "sidecar.experiments.tap")
    assert not {name for name in loaded if name.partition(".")[0] in ("numpy", "scipy")}
