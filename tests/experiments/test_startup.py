"""A bad experiment definition stops start-up: exit status 2, every problem listed, each naming its key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.assembly import load_experiment_setting, primary_variant, serving_variants
from sidecar.config import Settings
from sidecar.experiments.definition import ExperimentError

BAD = """\
name: ranker-v2
variants:
  control:   {weight: 0.8}
  treatment: {weight: 0.1, upstream: ftp://challenger:8080}
metrics:
  primary: [{name: conversion, source: warehouse, kind: proportion}]
correction: sidak
mde: 0.02
"""

GOOD = """\
name: ranker-v2
variants:
  control:   {weight: 0.9}
  treatment: {weight: 0.1, upstream: http://challenger:8080}
assignment: {key: header:x-user-id}
metrics:
  primary: [{name: conversion, source: outcome, kind: proportion}]
mde: 0.02
"""


def _serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "serve"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("plane", ["process", "inline"])
def test_a_bad_definition_stops_start_up_naming_every_key(tmp_path: Path, plane: str) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(BAD)
    result = _serve(
        {
            "SIDECAR_UPSTREAM_URL": "http://127.0.0.1:9",
            "SIDECAR_EXPERIMENT_PATH": str(path),
            "SIDECAR_MONITORING_PLANE": plane,
            "SIDECAR_STATE_DIR": str(tmp_path / "state"),
            "SIDECAR_LISTEN_PORT": "0",
            "SIDECAR_ADMIN_PORT": "0",
        }
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("ml-sidecar: invalid configuration:\n"), result.stderr
    problems = [line.strip() for line in result.stderr.splitlines()[1:]]
    prefix = f"SIDECAR_EXPERIMENT_PATH: {path}: "
    assert problems and all(line.startswith(prefix) for line in problems), problems
    # One line for each fault, each naming its key: the weights, the URL, the metric's source, the correction.
    for key in ("variants", "variants.treatment.upstream", "metrics.primary[0].source", "correction"):
        assert any(line.startswith(prefix + key) for line in problems), (key, problems)


def test_a_variant_named_fallback_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(GOOD.replace("treatment:", "fallback:"))
    settings = Settings.from_env({"SIDECAR_UPSTREAM_URL": "http://127.0.0.1:9", "SIDECAR_EXPERIMENT_PATH": str(path)})
    with pytest.raises(ExperimentError) as caught:
        load_experiment_setting(settings)
    assert caught.value.problems == [
        f"SIDECAR_EXPERIMENT_PATH: {path}: variants.fallback: the name is the fallback model's variant"
    ]


def test_the_request_metrics_variants_are_the_arms(tmp_path: Path) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(GOOD)
    base = {"SIDECAR_UPSTREAM_URL": "http://127.0.0.1:9"}
    none = Settings.from_env(base)
    assert load_experiment_setting(none) is None
    assert (primary_variant(None), serving_variants(none, None)) == ("primary", ("primary",))
    split = Settings.from_env({**base, "SIDECAR_EXPERIMENT_PATH": str(path), "SIDECAR_FALLBACK_URL": "http://f:1"})
    experiment = load_experiment_setting(split)
    assert experiment is not None
    assert primary_variant(experiment) == "control"
    assert serving_variants(split, experiment) == ("control", "treatment", "fallback")
    shadow = tmp_path / "shadow.yaml"
    shadow.write_text(
        "name: s\nmode: shadow\nvariants: {control: {}, challenger: {upstream: 'http://c:1'}}\n"
        "metrics: {primary: [{name: accuracy, source: label}]}\nmde: 0.02\n"
    )
    settings = Settings.from_env({**base, "SIDECAR_EXPERIMENT_PATH": str(shadow)})
    experiment = load_experiment_setting(settings)
    assert experiment is not None
    # Every client is served by control in shadow mode: the challenger's answers are no request of theirs.
    assert serving_variants(settings, experiment) == ("control",)
