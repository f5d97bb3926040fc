"""``ml-sidecar profile build`` and ``profile show`` as a person runs them: output, exit codes, files."""

from __future__ import annotations

import gc
import io
from pathlib import Path

import pytest

from sidecar.cli import main
from sidecar.profiling.progress import Progress, format_duration
from tests.profiling.data import sample_table, write_csv

ROLE_ARGS = ["--prediction", "pred", "--target", "label", "--confidence", "score"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "train.csv", sample_table())


def test_build_then_show(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "reference.json"
    assert main(["profile", "build", str(data), "--output", str(output), *ROLE_ARGS, "--version", "v1"]) == 0
    err = capsys.readouterr().err
    assert "profiled" in err and "2,000 rows" in err and "rows/s" in err and "version v1" in err
    assert "\r" not in err  # no bar when stderr is not a terminal
    assert gc.isenabled()  # paused for the build only
    assert main(["profile", "show", str(output)]) == 0
    shown = capsys.readouterr().out
    for fact in (
        "version     v1",
        "created_at",
        "hash        sha256:",
        "train.csv (csv), 2,000 rows",
        "quantiles   exact",
    ):
        assert fact in shown
    for fact in ("age", "numeric", "country", "categorical", "US 4", "__other__", "prediction", "confidence"):
        assert fact in shown
    assert "accuracy" in shown and "columns     prediction=pred, confidence=score, target=label" in shown


def test_progress_flag_draws_the_bar(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "build", str(data), "-o", str(tmp_path / "r.json"), "--progress"]) == 0
    err = capsys.readouterr().err
    assert "train.csv [" in err and "100%" in err and "\r" in err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.csv", "no such file"),
        (lambda d: _write(d / "ragged.csv", "a,b\n1,2\n3\n"), "ragged.csv:3: expected 2 fields, found 1"),
        (lambda d: _write(d / "bad.jsonl", '{"a": 1}\nnot json\n'), "bad.jsonl:2: not valid JSON"),
        (lambda d: _write(d / "bad.parquet", "not parquet"), "not a readable Parquet file"),
    ],
)
def test_bad_data_exits_1_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, message: str
) -> None:
    output = tmp_path / "out" / "reference.json"
    output.parent.mkdir()
    output.write_text("the previous profile")
    path = make(tmp_path)  # type: ignore[operator]
    assert main(["profile", "build", str(path), "--output", str(output)]) == 1
    assert message in capsys.readouterr().err
    assert output.read_text() == "the previous profile"
    assert gc.isenabled()
    assert sorted(p.name for p in output.parent.iterdir()) == ["reference.json"]


@pytest.mark.parametrize(
    "args",
    [
        ["--bins", "1"],
        ["--target", "nope"],
        ["--exclude", "pred", "--prediction", "pred"],
        ["--format", "xml"],
        ["--bins", "ten"],
    ],
)
def test_bad_arguments_exit_2(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    output = tmp_path / "r.json"
    try:
        code = main(["profile", "build", str(data), "-o", str(output), *args])
    except SystemExit as exc:  # argparse's own errors
        code = int(str(exc.code))
    assert code == 2
    assert "error" in capsys.readouterr().err
    assert not output.exists()


def test_missing_output_directory_exits_2(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "build", str(data), "-o", str(tmp_path / "nowhere" / "r.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unknown_extension_asks_for_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write(tmp_path / "train.txt", "a\n1\n")
    assert main(["profile", "build", str(data), "-o", str(tmp_path / "r.json")]) == 2
    assert "--format" in capsys.readouterr().err
    assert main(["profile", "build", str(data), "-o", str(tmp_path / "r.json"), "--format", "csv"]) == 0


def test_show_refuses_a_tampered_profile(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "r.json"
    assert main(["profile", "build", str(data), "-o", str(output)]) == 0
    output.write_text(output.read_text().replace('"rows": 2000', '"rows": 2001'))
    assert main(["profile", "show", str(output)]) == 1
    assert "content hash mismatch" in capsys.readouterr().err
    assert main(["profile", "show", str(tmp_path / "missing.json")]) == 1


def test_progress_line_and_throttle() -> None:
    stream = io.StringIO()
    clock = iter([0.0, 1.0, 1.05, 2.0])
    progress = Progress(stream, label="x.csv", enabled=True, clock=lambda: next(clock))
    progress.update(0.25, rows=100_000)  # t=1: drawn
    progress.update(0.3, rows=120_000)  # t=1.05: too soon
    progress.update(0.5, rows=200_000)  # t=2: drawn
    drawn = stream.getvalue().split("\r")[1:]
    assert len(drawn) == 2
    assert drawn[0].startswith("x.csv [######------------------]  25%  100,000 rows  100,000 rows/s  ETA 0:03")
    assert "50%  200,000 rows  100,000 rows/s  ETA 0:02" in drawn[1]
    progress.close()
    assert stream.getvalue().endswith("\r")
    quiet = io.StringIO()
    Progress(quiet, label="x", enabled=False).update(0.5, rows=1)
    assert quiet.getvalue() == ""
    assert (format_duration(7), format_duration(750), format_duration(3723)) == ("0:07", "12:30", "1:02:03")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
