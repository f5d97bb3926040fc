"""Whole builds: formats agree, options do what they say, baselines are right, the hash verifies."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import orjson
import pytest

import sidecar.profiling
from sidecar.profiling import BuildOptions, DataError, OptionError, build_profile, write_profile
from sidecar.reference import ProfileError, load_profile
from tests.profiling.data import WRITERS, sample_table, write_csv, write_jsonl

ROLES = BuildOptions(prediction="pred", target="label", confidence="score")
NOW = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC)


def test_public_api_is_pinned() -> None:
    assert sidecar.profiling.__all__ == [
        "BuildOptions",
        "BuildResult",
        "DataError",
        "OptionError",
        "QuantileSketch",
        "build_profile",
        "infer_kind",
        "render_profile",
        "write_profile",
    ]
    for name in sidecar.profiling.__all__:
        assert getattr(sidecar.profiling, name) is not None


def test_csv_jsonl_and_parquet_give_the_same_profile(tmp_path: Path) -> None:
    table = sample_table()
    profiles = {
        fmt: build_profile(write(tmp_path / f"data.{fmt}", table), ROLES, now=NOW).profile
        for fmt, write in WRITERS.items()
    }
    csv, jsonl, parquet = profiles["csv"], profiles["jsonl"], profiles["parquet"]
    for other in (jsonl, parquet):
        assert list(other.features) == list(csv.features) == ["age", "income", "country", "flag"]
        for name, d in csv.features.items():
            o = other.features[name]
            assert (o.kind, o.edges, o.categories, o.ratios) == (d.kind, d.edges, d.categories, d.ratios), name
            assert o.stats.to_json() == pytest.approx(d.stats.to_json()), name
        assert other.baseline == pytest.approx(csv.baseline)
        assert other.version == csv.version  # same content, same version
    assert csv.source["format"] == "csv" and csv.source["rows"] == 2_000


def test_kinds_roles_and_inferred_rules(tmp_path: Path) -> None:
    profile = build_profile(write_csv(tmp_path / "d.csv", sample_table()), ROLES, now=NOW).profile
    kinds = {name: d.kind for name, d in profile.features.items()}
    assert kinds == {"age": "numeric", "income": "numeric", "country": "categorical", "flag": "categorical"}
    assert set(profile.outputs) == {"prediction", "confidence"}
    assert profile.outputs["prediction"].kind == "categorical"  # 0/1 codes
    assert profile.outputs["confidence"].kind == "numeric"
    assert profile.target is not None and set(profile.target.categories) == {"0", "1"}
    assert profile.features["income"].stats.null_share == pytest.approx(0.05, abs=0.015)
    assert profile.source["roles"] == {"prediction": "pred", "confidence": "score", "target": "label"}


def test_exact_edges_and_ratios_follow_np_quantile_and_bin_of(tmp_path: Path) -> None:
    table = sample_table()
    profile = build_profile(write_csv(tmp_path / "d.csv", table), ROLES).profile
    for name in ("age", "income"):
        values = np.array([v for v in table[name] if v is not None], dtype=np.float64)
        d = profile.features[name]
        assert d.edges == tuple(np.unique(np.quantile(values, np.arange(1, 10) / 10)).tolist())
        bins = [d.bin_of(v) for v in table[name]]
        counted = np.bincount([b for b in bins if b is not None], minlength=d.bins) / values.size
        assert d.ratios == tuple(counted.tolist())
        assert sum(d.ratios) == pytest.approx(1.0)
    country = profile.features["country"]
    live = [b for b in map(country.bin_of, table["country"]) if b is not None]
    assert country.ratios == tuple((np.bincount(live, minlength=country.bins) / len(live)).tolist())


def test_exclude_categorical_and_numeric_options(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", sample_table())
    options = BuildOptions(
        exclude=frozenset({"pred", "label", "score"}), categorical=frozenset({"age"}), numeric=frozenset({"flag"})
    )
    features = build_profile(data, options).profile.features
    assert list(features) == ["age", "income", "country", "flag"]
    assert features["age"].kind == "categorical" and features["flag"].kind == "numeric"
    assert len(features["age"].categories) == 50  # --max-categories default, the tail in the other bucket
    assert features["age"].ratios[-1] > 0


def test_classification_baseline_matches_an_independent_count(tmp_path: Path) -> None:
    table = sample_table()
    y, p = np.array(table["label"]), np.array(table["pred"])
    baseline = build_profile(write_csv(tmp_path / "d.csv", table), ROLES).profile.baseline

    def prf(label: int) -> tuple[float, float, float]:
        tp = np.sum((p == label) & (y == label))
        precision, recall = tp / np.sum(p == label), tp / np.sum(y == label)
        return precision, recall, 2 * precision * recall / (precision + recall)

    macro = np.mean([prf(0), prf(1)], axis=0)
    assert baseline["count"] == len(y)
    assert baseline["accuracy"] == pytest.approx(np.mean(y == p))
    assert (baseline["precision"], baseline["recall"], baseline["f1"]) == pytest.approx(tuple(macro))
    binary = build_profile(
        tmp_path / "d.csv", BuildOptions(prediction="pred", target="label", positive_label="1")
    ).profile.baseline
    assert (binary["precision"], binary["recall"], binary["f1"]) == pytest.approx(prf(1))


def test_string_labels_and_rows_with_nulls(tmp_path: Path) -> None:
    table: dict[str, list[object]] = {
        "x": [1, 2, 3, 4, 5],
        "y": ["cat", "dog", "cat", None, "dog"],
        "yhat": ["cat", "cat", "cat", "dog", None],
    }
    baseline = build_profile(write_jsonl(tmp_path / "d.jsonl", table), BuildOptions(prediction="yhat", target="y"))
    metrics = baseline.profile.baseline
    assert metrics["count"] == 3 and metrics["accuracy"] == pytest.approx(2 / 3)
    # cat: precision 2/3, recall 1; dog: precision 0 (never predicted right), recall 0
    assert metrics["precision"] == pytest.approx((2 / 3 + 0) / 2)
    assert metrics["recall"] == pytest.approx(0.5)


def test_regression_baseline(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    y = rng.normal(100, 20, 3_000).round(3)
    p = (y + rng.normal(0, 5, y.size)).round(3)
    data = write_csv(tmp_path / "r.csv", {"x": rng.random(y.size).tolist(), "y": y.tolist(), "p": p.tolist()})
    metrics = build_profile(data, BuildOptions(prediction="p", target="y")).profile.baseline
    assert metrics["count"] == y.size
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(p - y)))
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean((p - y) ** 2)))


def test_content_hash_verifies_and_tampering_is_caught(tmp_path: Path) -> None:
    result = build_profile(write_csv(tmp_path / "d.csv", sample_table()), ROLES, now=NOW)
    output = tmp_path / "reference.json"
    write_profile(result.profile, output)
    loaded = load_profile(output)
    assert loaded.content_hash.startswith("sha256:") and loaded.version.startswith("2026-11-26.")
    assert loaded.features["age"].edges == result.profile.features["age"].edges
    data = orjson.loads(output.read_bytes())
    data["features"]["age"]["ratios"][0] += 0.01
    output.write_bytes(orjson.dumps(data))
    with pytest.raises(ProfileError, match="content hash mismatch"):
        load_profile(output)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_explicit_version_and_approximate_columns_are_recorded(tmp_path: Path) -> None:
    values = np.random.default_rng(13).normal(size=100_000).round(6)
    data = write_csv(tmp_path / "big.csv", {"v": values.tolist()})
    profile = build_profile(data, BuildOptions(version="v7", exact_limit=10_000)).profile
    assert profile.version == "v7"
    error = profile.source["quantile_rank_error"]["v"]
    assert 0 < error < 0.01
    exact = np.bincount(np.searchsorted(profile.features["v"].edges, values, side="left")) / values.size
    assert np.all(np.abs(np.array(profile.features["v"].ratios) - exact) <= 2 * error)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (BuildOptions(bins=1), "--bins must be between 2"),
        (BuildOptions(prediction="pred", target="pred"), "given to both --prediction and --target"),
        (BuildOptions(prediction="pred", exclude=frozenset({"pred"})), "and to --exclude"),
        (BuildOptions(categorical=frozenset({"age"}), numeric=frozenset({"age"})), "both --categorical and --numeric"),
        (BuildOptions(positive_label="1"), "--positive-label needs"),
        (BuildOptions(target="nope"), "--target 'nope': DATA has no such column"),
        (BuildOptions(exclude=frozenset({"nope"})), "--exclude 'nope'"),
    ],
)
def test_unusable_options(tmp_path: Path, options: BuildOptions, message: str) -> None:
    data = write_csv(tmp_path / "d.csv", sample_table(rows=50))
    with pytest.raises(OptionError, match=message):
        build_profile(data, options)


def test_unknown_jsonl_column_is_found_at_the_end(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", {"a": [1, 2]})
    with pytest.raises(OptionError, match="--prediction 'b'"):
        build_profile(data, BuildOptions(prediction="b"))


def test_header_only_is_not_a_profile(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("a,b\n")
    with pytest.raises(DataError, match="no data rows"):
        build_profile(path)


def test_baseline_warnings_point_at_likely_mistakes(tmp_path: Path) -> None:
    table: dict[str, list[object]] = {
        "y": ["a", "b", "a", "b"],
        "score": [0.9, 0.2, 0.7, 0.4],
        "label": ["b", "a", "b", "a"],
    }
    data = write_jsonl(tmp_path / "d.jsonl", table)
    scored = build_profile(data, BuildOptions(target="y", prediction="score"))
    assert scored.profile.baseline["accuracy"] == 0.0
    assert any("not a score" in w for w in scored.warnings)
    labelled = build_profile(data, BuildOptions(target="y", prediction="label", positive_label="yes"))
    assert any("--positive-label 'yes' is not among" in w for w in labelled.warnings)


def test_show_names_approximate_quantiles(tmp_path: Path) -> None:
    from sidecar.profiling import render_profile

    values = np.random.default_rng(15).random(60_000).round(6)
    data = write_csv(tmp_path / "v.csv", {"v": values.tolist()})
    profile = build_profile(data, BuildOptions(exact_limit=10_000)).profile
    assert "quantiles   approximate for 1 column (rank error at most" in render_profile(profile, "r.json")
