"""The fleet-drift recording rules in deploy/prometheus/, run through the real promtool.

Besides running ``promtool check rules`` and ``promtool test rules``, this module
recomputes every expected value in ``recording_rules_test.yml`` from that file's
input series: Prometheus 2.x ``increase()`` per series (counter resets and
extrapolation included), summed over replicas, then the PSI of docs/architecture.md with numpy.
So a number in the YAML that does not follow from its inputs fails here, even
where promtool would agree with a wrong rule.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import yaml

from tests.tools import run_tool

RULES_DIR = Path(__file__).parent.parent / "deploy" / "prometheus"
RULES_TEST = RULES_DIR / "recording_rules_test.yml"

EPSILON = 1e-4  # docs/architecture.md: a share of 0 becomes EPSILON before the log
MIN_SAMPLES = 200.0  # SIDECAR_DRIFT_MIN_SAMPLES' default
WINDOW = 3600.0  # seconds, the rules' [1h]
LOOKBACK = 300.0  # seconds, Prometheus' default lookback for instant selectors

COUNTER = "mlsidecar_feature_bin_observations_total"
REFERENCE = "mlsidecar_feature_reference_bin_ratio"
INFO = "mlsidecar_reference_info"

# The recorded series, in the order the rule group evaluates them.
INCREASE = "model_feature_bin:mlsidecar_feature_bin_observations:increase1h"
TOTAL = "model_feature:mlsidecar_feature_observations:increase1h"
REFERENCE_MAX = "model_feature_bin:mlsidecar_feature_reference_bin_ratio:max"
SHARE = "model_feature_bin:mlsidecar_feature_bin_share:ratio1h"
VERSIONS = "model:mlsidecar_reference_versions:count1h"
CONTRIBUTION = "model_feature_bin:mlsidecar_feature_psi_contribution:fleet1h"
PSI = "model_feature:mlsidecar_feature_psi:fleet1h"
RECORDED = (INCREASE, TOTAL, REFERENCE_MAX, SHARE, VERSIONS, CONTRIBUTION, PSI)

Labels = frozenset[tuple[str, str]]
Points = list[tuple[float, float]]  # (seconds, value)
FloatArray = npt.NDArray[np.float64]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return run_tool("promtool", *args, cwd=RULES_DIR)


def _rule_files() -> list[Path]:
    files = sorted(p for p in RULES_DIR.glob("*.yml") if not p.name.endswith("_test.yml"))
    assert files, f"no rule files in {RULES_DIR}"
    return files


def test_rule_files_pass_promtool_check_without_warnings() -> None:
    result = _promtool("check", "rules", *(p.name for p in _rule_files()))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS" in output, output
    assert "warning" not in output.lower(), output


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", RULES_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_record_the_documented_series() -> None:
    rules = [rule for path in _rule_files() for g in _load(path)["groups"] for rule in g["rules"]]
    records = [rule["record"] for rule in rules if "record" in rule]
    assert records == list(RECORDED)
    readme = (RULES_DIR / "README.md").read_text()
    for name in RECORDED:
        assert f"`{name}`" in readme, f"{name} is not described in deploy/prometheus/README.md"


def test_readme_prometheus_config_passes_promtool_check(tmp_path: Path) -> None:
    config = next(block for block in _yaml_blocks(RULES_DIR / "README.md") if "rule_files" in block)
    assert "recording_rules.yml" in config and ":9100" in config
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copy(RULES_DIR / "recording_rules.yml", tmp_path)
    result = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning" not in output.lower(), output


def test_readme_kubernetes_scrape_job_keeps_port_9100() -> None:
    # Debian's promtool has no Kubernetes discovery, so this block is checked for shape only.
    block = next(block for block in _yaml_blocks(RULES_DIR / "README.md") if "kubernetes_sd_configs" in block)
    (job,) = yaml.safe_load(block)["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    keep = {tuple(r["source_labels"]): r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"}
    assert keep[("__meta_kubernetes_pod_container_port_number",)] == "9100"


def test_readme_alert_example_passes_promtool_check(tmp_path: Path) -> None:
    alert = next(block for block in _yaml_blocks(RULES_DIR / "README.md") if "- alert:" in block)
    rules = tmp_path / "alerts.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "example", "rules": yaml.safe_load(alert)}]}))
    result = _promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr


def test_expected_values_follow_from_the_input_series() -> None:
    """Recompute every expectation of the promtool tests; a wrong hand-typed number fails here."""
    checked_psi = 0
    for case in _load(RULES_TEST)["tests"]:
        assert case["interval"] == "1m", case["name"]
        series = [_parse_series(s["series"], s["values"]) for s in case["input_series"]]
        for check in case["promql_expr_test"]:
            name, selector, rounded = _parse_expr(check["expr"])
            at = _seconds(check["eval_time"])
            got = {
                labels: value
                for labels, value in _evaluate(series, at)[name].items()
                if selector <= labels  # the expression's label matchers
            }
            expected = {_parse_labels(s["labels"], name): float(s["value"]) for s in check.get("exp_samples") or []}
            where = f"{case['name']!r}, {check['expr']} at {check['eval_time']}"
            assert got.keys() == expected.keys(), where
            for labels, value in expected.items():
                # round(x, 0.0001) in the YAML: the exact value is within half a unit of the 4th decimal.
                tolerance = 5e-5 + 1e-12 if rounded else 1e-9 * max(1.0, abs(value))
                assert abs(got[labels] - value) <= tolerance, (where, dict(labels), got[labels], value)
            checked_psi += name == PSI
    assert checked_psi >= 10


def test_psi_matches_the_documented_formula_directly() -> None:
    """The emulation's PSI is the documented formula; pin it on hand-made shares (incl. the epsilon cases)."""
    assert _psi([0.6, 0.4], [0.5, 0.5]) == pytest.approx(0.1 * math.log(1.2) + 0.1 * math.log(1.25))
    assert _psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    # An empty current bin and an empty reference bin both become 1e-4 ...
    empty = (1e-4 - 0.2) * math.log(1e-4 / 0.2)
    assert _psi([0.6, 0.4, 0.0], [0.5, 0.3, 0.2]) == pytest.approx(0.1 * math.log(1.2) + 0.1 * math.log(4 / 3) + empty)
    assert _psi([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0
    # ... but a share that is small and not 0 is kept as it is.
    assert _psi([0.99995, 0.00005], [0.5, 0.5]) == pytest.approx(
        0.49995 * math.log(0.99995 / 0.5) + (0.00005 - 0.5) * math.log(0.00005 / 0.5)
    )


# --- An emulation of the rule group, from the raw input series -----------------------------------


@dataclass(frozen=True)
class _Series:
    name: str
    labels: Mapping[str, str]
    points: Points


def _evaluate(series: Iterable[_Series], at: float) -> dict[str, dict[Labels, float]]:
    """What each recorded series holds at time ``at`` (seconds), computed from the raw series."""
    increases: dict[tuple[str, str, str], float] = defaultdict(float)
    references: dict[tuple[str, str, str], float] = {}
    versions: dict[str, set[str]] = defaultdict(set)
    for s in series:
        if s.name == COUNTER:
            increase = _increase(s.points, at)
            if increase is not None:  # increase() needs two samples in the window
                increases[_bin_key(s.labels)] += increase  # per series first, then summed
        elif s.name == REFERENCE:
            value = _instant(s.points, at)
            if value is not None:
                key = _bin_key(s.labels)
                references[key] = max(value, references.get(key, value))  # identical per replica
        elif s.name == INFO and any(at - WINDOW <= t <= at for t, _ in s.points):
            versions[s.labels["model"]].add(s.labels["version"])

    totals: dict[tuple[str, str], float] = defaultdict(float)
    for (model, feature, _), value in increases.items():
        totals[model, feature] += value

    out: dict[str, dict[Labels, float]] = {name: {} for name in RECORDED}
    out[INCREASE] = {_labels(model=m, feature=f, bin=b): v for (m, f, b), v in increases.items()}
    out[TOTAL] = {_labels(model=m, feature=f): v for (m, f), v in totals.items()}
    out[REFERENCE_MAX] = {_labels(model=m, feature=f, bin=b): v for (m, f, b), v in references.items()}
    out[VERSIONS] = {_labels(model=m): float(len(v)) for m, v in versions.items()}

    shares: dict[tuple[str, str, str], float] = {}
    for key in [*increases, *references]:  # a reference bin without a counter has share 0
        total = totals.get(key[:2], 0.0)
        if total > 0:
            shares[key] = increases.get(key, 0.0) / total
    out[SHARE] = {_labels(model=m, feature=f, bin=b): v for (m, f, b), v in shares.items()}

    for model, feature in {key[:2] for key in references}:
        bins = sorted(b for (m, f, b) in references if (m, f) == (model, feature) and (m, f, b) in shares)
        if not bins:
            continue
        cur = np.array([shares[model, feature, b] for b in bins])
        ref = np.array([references[model, feature, b] for b in bins])
        terms = _psi_terms(cur, ref)
        for b, term in zip(bins, terms, strict=True):
            out[CONTRIBUTION][_labels(model=model, feature=feature, bin=b)] = float(term)
        if totals[model, feature] >= MIN_SAMPLES and len(versions.get(model, ())) <= 1:
            out[PSI][_labels(model=model, feature=feature)] = float(terms.sum())
    return out


def _psi_terms(cur: FloatArray, ref: FloatArray) -> FloatArray:
    """docs/architecture.md: PSI = sum (cur_i - ref_i) * ln(cur_i / ref_i); a share of 0 becomes EPSILON."""
    cur = np.where(cur == 0, EPSILON, cur)
    ref = np.where(ref == 0, EPSILON, ref)
    return (cur - ref) * np.log(cur / ref)


def _psi(cur: list[float], ref: list[float]) -> float:
    return float(_psi_terms(np.array(cur, dtype=np.float64), np.array(ref, dtype=np.float64)).sum())


def _increase(points: Points, at: float) -> float | None:
    """Prometheus 2.x ``increase(x[1h])`` at ``at``: samples in [at-1h, at], resets, extrapolation."""
    window = [(t, v) for t, v in points if at - WINDOW <= t <= at]
    if len(window) < 2:
        return None
    (first_t, first_v), (last_t, last_v) = window[0], window[-1]
    result = last_v - first_v
    previous = 0.0
    for _, value in window:
        if value < previous:  # a counter reset: the value before it was lost from last - first
            result += previous
        previous = value
    sampled = last_t - first_t
    average = sampled / (len(window) - 1)
    to_start, to_end = first_t - (at - WINDOW), at - last_t
    if result > 0 and first_v >= 0:
        to_start = min(to_start, sampled * first_v / result)  # a counter does not extrapolate below 0
    # A series whose first (last) sample is farther from the edge than this is taken to start
    # (end) half an average interval beyond it.
    threshold = average * 1.1
    to_start = to_start if to_start < threshold else average / 2
    to_end = to_end if to_end < threshold else average / 2
    return result * (sampled + to_start + to_end) / sampled


def _instant(points: Points, at: float) -> float | None:
    """An instant selector: the latest sample no older than the lookback."""
    recent = [v for t, v in points if at - LOOKBACK < t <= at]
    return recent[-1] if recent else None


def _bin_key(labels: Mapping[str, str]) -> tuple[str, str, str]:
    return labels["model"], labels["feature"], labels["bin"]


def _labels(**labels: str) -> Labels:
    return frozenset(labels.items())


# --- Parsing promtool's test format -------------------------------------------------------------

_SERIES = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_EXPANDING = re.compile(rf"(?P<start>{_NUMBER})(?:(?P<sign>[-+])(?P<step>{_NUMBER}))?x(?P<times>\d+)")
_EXPR = re.compile(r"(?:round\((?P<inner>.+), 0\.0001\)|(?P<plain>.+))")


def _parse_series(series: str, values: str) -> _Series:
    match = _SERIES.fullmatch(series.strip())
    assert match, series
    points = [(i * 60.0, v) for i, v in enumerate(_expand(values)) if v is not None]  # interval 1m, from 0
    return _Series(match["name"], dict(_parse_label_pairs(match["labels"] or "")), points)


def _expand(values: str) -> list[float | None]:
    """promtool's notation: ``a+bxn`` is a, a+b, ..., a+n*b (n+1 values); ``axn`` is a, n+1 times; ``_`` is none."""
    out: list[float | None] = []
    for token in values.split():
        if token == "_":
            out.append(None)
        elif match := _EXPANDING.fullmatch(token):
            start, times = float(match["start"]), int(match["times"])
            step = float(match["step"] or 0) * (-1 if match["sign"] == "-" else 1)
            out.extend(start + step * i for i in range(times + 1))
        elif re.fullmatch(_NUMBER, token):
            out.append(float(token))
        else:
            raise AssertionError(f"input series token {token!r} is not supported by this emulation")
    return out


def _parse_expr(expr: str) -> tuple[str, Labels, bool]:
    """``NAME{matchers}`` or ``round(NAME{matchers}, 0.0001)``: the forms these tests use."""
    match = _EXPR.fullmatch(expr.strip())
    assert match, expr
    rounded = match["inner"] is not None
    selector = _SERIES.fullmatch((match["inner"] or match["plain"]).strip())
    assert selector and selector["name"] in RECORDED, f"unsupported expression {expr!r}"
    return selector["name"], frozenset(_parse_label_pairs(selector["labels"] or "")), rounded


def _parse_labels(text: str, name: str) -> Labels:
    match = _SERIES.fullmatch(text.strip())
    if match is None:  # '{...}' without a name, as after round()
        assert text.strip().startswith("{") and text.strip().endswith("}"), text
        return frozenset(_parse_label_pairs(text.strip()[1:-1]))
    assert match["name"] == name, (text, name)
    return frozenset(_parse_label_pairs(match["labels"] or ""))


def _parse_label_pairs(text: str) -> list[tuple[str, str]]:
    """``k="v", ...`` (equality matchers only: anything else is a test this emulation cannot follow)."""
    pairs: list[tuple[str, str]] = []
    position = 0
    while position < len(text.rstrip()):
        match = _LABEL.match(text, position)
        assert match, f"cannot parse labels {text!r} at {position}"
        pairs.append((match[1], match[2]))
        position = match.end()
    return pairs


def _seconds(duration: str) -> float:
    parts = re.findall(r"(\d+)([smh])", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return float(sum(int(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in parts))


def _yaml_blocks(markdown: Path) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", markdown.read_text(), flags=re.MULTILINE | re.DOTALL)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
