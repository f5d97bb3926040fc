"""``ml-sidecar profile check``: a data file judged against a profile with the live drift statistics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from sidecar.cli import main
from sidecar.drift import DriftTracker, evaluate
from sidecar.profiling.check import CheckOptions, check_data
from sidecar.profiling.errors import OptionError
from sidecar.reference import load_profile
from tests.profiling.data import WRITERS, write_csv, write_jsonl
from tests.records import make_record

ROWS = 4_000
COUNTRIES = ["US", "DE", "FR", "UK"]


def table(seed: int, *, age_shift: float = 0.0, countries: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, ROWS)
    return {
        "age": rng.normal(40.0 + age_shift, 10.0, ROWS).round(2).tolist(),
        "income": rng.lognormal(10.0, 0.5, ROWS).round(2).tolist(),
        "country": rng.choice(COUNTRIES, ROWS, p=list(countries)).tolist(),
        "device": rng.choice(["ios", "android"], ROWS).tolist(),
        "pred": np.where(rng.random(ROWS) < 0.8, label, 1 - label).tolist(),
        "label": label.tolist(),
    }


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    data = write_csv(tmp_path / "train.csv", table(1))
    output = tmp_path / "reference.json"
    assert main(["profile", "build", str(data), "-o", str(output), "--prediction", "pred", "--target", "label"]) == 0
    return output


def test_unshifted_data_passes_and_shifted_data_is_flagged_exactly_where_it_moved(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    same = write_csv(tmp_path / "same.csv", table(2))
    assert main(["profile", "check", str(reference), str(same)]) == 0
    out = capsys.readouterr().out
    assert "dataset: no_drift (0 of 4 features drifted by the combined rule" in out
    shifted = write_csv(tmp_path / "shifted.csv", table(3, age_shift=5.0, countries=(0.1, 0.2, 0.3, 0.4)))
    assert main(["profile", "check", str(reference), str(shifted), "--drift-share", "0.25"]) == 3
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert [name for name, line in lines.items() if line.endswith(" drift")] == ["age", "country"]
    assert lines["income"].endswith("no_drift") and lines["device"].endswith("no_drift")


def test_the_verdicts_are_those_of_the_same_rows_sent_as_live_records(reference: Path, tmp_path: Path) -> None:
    data = table(4, age_shift=3.0)
    profile = load_profile(reference)
    result = check_data(profile, write_jsonl(tmp_path / "today.jsonl", data), CheckOptions())
    live = DriftTracker(profile, window_seconds=60, slice_seconds=60, clock=lambda: 0.0)
    names = ["age", "income", "country", "device"]
    rows = zip(*(data[name] for name in names), data["pred"], strict=True)
    live.update([make_record(features=dict(zip(names, row[:4], strict=True)), prediction=row[4]) for row in rows])
    live.update_labels([(label, 1.0) for label in data["label"]])
    expected = evaluate(live)
    for mine, theirs in [
        *zip(result.snapshot.features, expected.features, strict=True),
        *zip(result.snapshot.outputs, expected.outputs, strict=True),
        (result.snapshot.label, expected.label),
    ]:
        assert mine is not None and theirs is not None
        assert (mine.name, mine.verdict, mine.stats.count) == (theirs.name, theirs.verdict, theirs.stats.count)
        assert mine.current == pytest.approx(theirs.current, rel=1e-12)
        assert mine.methods[0].score == pytest.approx(theirs.methods[0].score, rel=1e-12)


def test_every_format_gives_the_same_report(reference: Path, tmp_path: Path) -> None:
    data = table(8, age_shift=4.0, countries=(0.25, 0.25, 0.25, 0.25))
    profile = load_profile(reference)
    reports = {
        fmt: check_data(profile, write(tmp_path / f"today.{fmt}", data), CheckOptions()).snapshot
        for fmt, write in WRITERS.items()
    }
    csv = reports.pop("csv")
    for snapshot in reports.values():
        assert [(f.name, f.verdict, f.current) for f in snapshot.features] == [
            (f.name, f.verdict, f.current) for f in csv.features
        ]
        assert snapshot.label is not None and csv.label is not None
        assert snapshot.label.current == csv.label.current


def test_psi_matches_an_independent_computation_from_the_file(reference: Path, tmp_path: Path) -> None:
    data = table(5, age_shift=4.0)
    result = check_data(load_profile(reference), write_csv(tmp_path / "today.csv", data), CheckOptions())
    dist = load_profile(reference).features["age"]
    counts = np.bincount(np.searchsorted(dist.edges, data["age"], side="left"), minlength=len(dist.edges) + 1)
    current = np.maximum(counts / counts.sum(), 1e-4)
    ref = np.maximum(np.array(dist.ratios), 1e-4)
    expected = float(((current - ref) * np.log(current / ref)).sum())
    assert result.snapshot.feature("age").methods[0].score == pytest.approx(expected, rel=1e-9)


def test_json_report_roles_and_missing_columns(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = table(6)
    data["prediction_v2"] = data.pop("pred")
    del data["device"], data["label"]
    path = write_csv(tmp_path / "today.csv", data)
    assert main(["profile", "check", str(reference), str(path), "--json", "--prediction", "prediction_v2"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["rows"] == ROWS
    assert report["columns"] == {"prediction": "prediction_v2", "target": "label"}
    assert (report["missing"], report["unchecked"]) == (["device"], ["target"])
    assert report["drift"]["label"] is not None and report["drift"]["label"]["verdict"] == "insufficient_data"
    device = next(f for f in report["drift"]["features"] if f["name"] == "device")
    assert device["verdict"] == "insufficient_data" and device["stats"]["null_share"] == 1.0
    prediction = report["drift"]["outputs"][0]
    assert prediction["name"] == "prediction" and prediction["verdict"] == "no_drift"
    assert not math.isnan(report["drift"]["drifted_share"])


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{reference}", "{missing}"], 1, "no such file"),
        (["{data}", "{data}"], 1, "is not valid JSON"),
        (["{reference}", "{data}", "--min-samples", "0"], 2, "--min-samples must be at least 1"),
        (["{reference}", "{data}", "--drift-share", "1"], 2, "--drift-share must be in [0, 1)"),
        (["{reference}", "{data}", "--verdict", "evidently"], 2, "--verdict must be one of combined, psi"),
        (["{reference}", "{data}", "--alpha", "0"], 2, "--alpha must be between 0 and 1"),
        (["{reference}", "{data}", "--wasserstein-threshold", "-1"], 2, "--wasserstein-threshold must be a positive"),
    ],
)
def test_errors_name_the_problem_and_exit_1_or_2(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    data = write_csv(tmp_path / "today.csv", table(7))
    paths = {"reference": reference, "data": data, "missing": tmp_path / "missing.csv"}
    assert main(["profile", "check", *(arg.format(**paths) for arg in args)]) == code
    error = capsys.readouterr().err
    assert error.startswith("ml-sidecar profile check: error: ") and message in error


def shifted_outputs(seed: int, shifted: tuple[str, ...]) -> dict[str, Any]:
    """The features of the reference's distribution; the prediction and/or target 90 % positive, against 50 %."""
    data = table(seed)
    positive = (np.random.default_rng(seed).random(ROWS) < 0.9).astype(int).tolist()
    for name in shifted:
        data[name] = positive
    return data


@pytest.mark.parametrize(
    ("shifted", "drifted"),
    [(("pred", "label"), ["prediction", "target"]), (("pred",), ["prediction"]), (("label",), ["target"])],
)
def test_drift_of_the_prediction_or_the_target_alone_fails_the_check_unless_ignored(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], shifted: tuple[str, ...], drifted: list[str]
) -> None:
    path = str(write_csv(tmp_path / "today.csv", shifted_outputs(11, shifted)))
    assert main(["profile", "check", str(reference), path]) == 3
    out = capsys.readouterr().out
    assert "dataset: no_drift (0 of 4 features drifted by the combined rule" in out  # the inputs did not move
    assert f"outputs: drift ({', '.join(drifted)} drifted by the combined rule; the check fails on it)" in out
    assert main(["profile", "check", str(reference), path, "--json"]) == 3
    report = orjson.loads(capsys.readouterr().out)
    assert (report["verdict"], report["drifted_outputs"], report["drift"]["verdict"]) == ("drift", drifted, "no_drift")
    for name in drifted:
        result = report["drift"]["label"] if name == "target" else report["drift"]["outputs"][0]
        assert result["verdict"] == "drift" and result["methods"][0]["score"] > 0.2
    assert main(["profile", "check", str(reference), path, "--ignore-output-drift"]) == 0
    out = capsys.readouterr().out
    assert f"outputs: drift ({', '.join(drifted)} drifted by the combined rule; ignored, --ignore-output-drift)" in out
    assert main(["profile", "check", str(reference), path, "--ignore-output-drift", "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert (report["verdict"], report["drifted_outputs"], report["ignore_output_drift"]) == ("no_drift", drifted, True)


def test_feature_drift_still_fails_when_output_drift_is_ignored(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tmp_path / "today.csv", table(12, age_shift=8.0, countries=(0.1, 0.2, 0.3, 0.4)))
    assert main(["profile", "check", str(reference), str(path), "--drift-share", "0.25", "--ignore-output-drift"]) == 3
    assert "outputs: no_drift (no output or target drifted by the combined rule)" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--target", "lable"],
            "--target 'lable': neither DATA nor the profile has such a column; did you mean 'label'?"
            " (DATA's columns: 'age', 'income', 'country', 'device', 'pred', 'label')",
        ),
        (["--prediction", "prediction"], "--prediction 'prediction': neither DATA nor the profile has such a column"),
        (["--confidence", "pred"], "--confidence 'pred': the profile has no confidence output to judge it against"),
    ],
)
def test_a_mistyped_or_unusable_role_column_exits_2_naming_the_flag_and_the_columns(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, args: list[str], message: str
) -> None:
    path = WRITERS[fmt](tmp_path / f"today.{fmt}", shifted_outputs(13, ("pred", "label")))
    assert main(["profile", "check", str(reference), str(path), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no report: the check did not run as asked
    assert captured.err.startswith("ml-sidecar profile check: error: ") and message in captured.err


def test_a_role_the_profile_lacks_exits_2_and_every_problem_is_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_csv(tmp_path / "train.csv", table(14))
    bare = tmp_path / "bare.json"
    assert main(["profile", "build", str(data), "-o", str(bare), "--exclude", "pred,label"]) == 0
    capsys.readouterr()
    args = ["--target", "label", "--prediction", "pred", "--min-samples", "0"]
    assert main(["profile", "check", str(bare), str(data), *args]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors == [
        "ml-sidecar profile check: error: --min-samples must be at least 1, not 0",
        "ml-sidecar profile check: error: --prediction 'pred': the profile has no prediction output to judge it"
        " against (it was built without --prediction)",
        "ml-sidecar profile check: error: --target 'label': the profile has no target to judge it against"
        " (it was built without --target)",
    ]


def test_a_named_column_the_profile_knows_but_the_data_lacks_is_listed_not_an_error(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = table(15)
    del data["label"]  # today's predictions, before their labels arrive
    path = write_csv(tmp_path / "today.csv", data)
    assert main(["profile", "check", str(reference), str(path), "--target", "label"]) == 0
    out = capsys.readouterr().out
    assert "not judged, their columns are not in the data: target (label)" in out


def test_a_wide_file_lists_its_first_columns_only(reference: Path, tmp_path: Path) -> None:
    data: dict[str, Any] = {f"c{i:02d}": [1, 2] for i in range(30)}
    path = write_csv(tmp_path / "wide.csv", data)
    with pytest.raises(OptionError) as raised:
        check_data(load_profile(reference), path, CheckOptions(target="c99"))
    [problem] = raised.value.problems
    assert problem.endswith("'c18', 'c19', and 10 more)") and "'c20'" not in problem


def test_the_combined_verdicts_of_a_file_are_those_of_its_rows_as_live_records(tmp_path: Path) -> None:
    """Twenty features, one shifted by 0.3σ: the same verdicts, corrected p-values and effect sizes either way."""
    rng = np.random.default_rng(19)
    names = [f"n{i}" for i in range(15)] + [f"c{i}" for i in range(5)]

    def rows(n: int, shift: float) -> dict[str, Any]:
        data: dict[str, Any] = {name: rng.normal(0.0, 1.0, n).round(4).tolist() for name in names[:15]}
        data["n0"] = rng.normal(shift, 1.0, n).round(4).tolist()
        data.update({name: rng.choice(COUNTRIES, n, p=[0.4, 0.3, 0.2, 0.1]).tolist() for name in names[15:]})
        return data

    reference = tmp_path / "reference.json"
    train = write_csv(tmp_path / "train.csv", rows(20_000, 0.0))
    assert main(["profile", "build", str(train), "-o", str(reference)]) == 0
    profile = load_profile(reference)
    today = rows(3_000, 0.3)
    result = check_data(profile, write_csv(tmp_path / "today.csv", today), CheckOptions())
    live = DriftTracker(profile, window_seconds=60, slice_seconds=60, clock=lambda: 0.0)
    live.update([make_record(features=dict(zip(names, row, strict=True))) for row in zip(*today.values(), strict=True)])
    expected = evaluate(live)
    assert [f.name for f in result.snapshot.features if f.verdict == "drift"] == ["n0"]
    for mine, theirs in zip(result.snapshot.features, expected.features, strict=True):
        assert (mine.name, mine.verdict, mine.labels) == (theirs.name, theirs.verdict, theirs.labels)
        for method, same in zip(mine.methods, theirs.methods, strict=True):
            assert (method.method, method.verdict) == (same.method, same.verdict)
            for value, other in ((method.score, same.score), (method.corrected_pvalue, same.corrected_pvalue)):
                assert value == (None if other is None else pytest.approx(other, rel=1e-9))


def test_the_verdict_rule_and_its_thresholds_are_options(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 0.3σ shift of age: drift by the combined rule, not by PSI alone, nor with a higher threshold."""
    path = str(write_csv(tmp_path / "today.csv", table(3, age_shift=3.0)))
    verdicts = {}
    for options in ([], ["--verdict", "psi"], ["--wasserstein-threshold", "0.5"], ["--alpha", "1e-30"]):
        assert main(["profile", "check", str(reference), path, "--json", *options]) == 0
        report = orjson.loads(capsys.readouterr().out)
        age = next(f for f in report["drift"]["features"] if f["name"] == "age")
        verdicts[" ".join(options)] = (age["verdict"], report["drift"]["rule"]["name"])
    assert verdicts == {
        "": ("drift", "combined"),  # real (p ~ 1e-26) and material (W ~ 0.3)
        "--verdict psi": ("no_drift", "psi"),  # PSI ~ 0.09
        "--wasserstein-threshold 0.5": ("moderate", "combined"),  # real, and W above half of 0.5
        "--alpha 1e-30": ("no_drift", "combined"),  # not real at that level
    }
