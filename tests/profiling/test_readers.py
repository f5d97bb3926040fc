"""The readers: what a number, a key and a null are in each format, and how bad files are reported."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from sidecar.profiling.csvfile import CsvReader, parse_cells
from sidecar.profiling.errors import DataError, OptionError
from sidecar.profiling.jsonl import parse_values
from sidecar.profiling.readers import Chunk, Column, detect_format, open_data
from tests.profiling.data import write_parquet


def _read(path: Path, **kwargs: object) -> list[Chunk]:
    with open_data(path, **kwargs) as reader:  # type: ignore[arg-type]
        return list(reader)


def _one(path: Path, name: str) -> Column:
    chunks = _read(path)
    numbers = np.concatenate([c.columns[name].numbers for c in chunks])
    keys: list[str | None] = []
    for c in chunks:
        column = c.columns[name]
        keys += column.keys if column.keys is not None else [None] * column.numbers.size
    return Column(numbers, keys)


def _same(a: np.ndarray, b: list[float]) -> bool:
    return bool(np.array_equal(a, np.array(b, dtype=np.float64), equal_nan=True))


def test_csv_cells_numbers_nulls_and_text() -> None:
    column = parse_cells(["1.5", "", "NA", "abc", " 2 ", "nan", "inf", "N/A", "1e3"])
    assert _same(column.numbers, [1.5, np.nan, np.nan, np.nan, 2.0, np.nan, np.inf, np.nan, 1000.0])
    assert column.keys == [None, None, None, "abc", None, None, None, None, None]
    assert parse_cells(["1", "", "2"]).keys is None  # numbers and nulls take the fast path


@pytest.mark.parametrize("path_kind", ["loadtxt", "split", "csv"])
def test_csv_paths_agree(tmp_path: Path, path_kind: str) -> None:
    rows = ["a,b", "1,2.5", "3,-4e2", "", "5,6"]
    if path_kind == "split":
        rows[1] = "1,"  # an empty cell: loadtxt refuses the chunk
    if path_kind == "csv":
        rows[2] = '"3",-4e2'  # a quote: the csv module's turn
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    a = _one(path, "a").numbers
    assert _same(a, [1, 3, 5])
    assert _same(_one(path, "b").numbers, [np.nan if path_kind == "split" else 2.5, -400, 6])


def test_csv_quoted_fields_bom_crlf(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(b'\xef\xbb\xbfname,note\r\n1,"two\r\nlines, and a comma"\r\n2,"say ""hi"""\r\n')
    chunks = _read(path)
    assert [c.rows for c in chunks] == [2]
    assert chunks[0].columns["note"].keys == ["two\r\nlines, and a comma", 'say "hi"']
    with CsvReader(path) as reader:
        assert reader.columns == ("name", "note")


def test_csv_stray_quote_in_an_unquoted_field_is_text(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("height,n\n5'10\",1\n6'1\",2\n5'9\",3\n")
    assert _one(path, "height").keys == ["5'10\"", "6'1\"", "5'9\""]


def test_csv_chunks_never_split_a_quoted_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sidecar.profiling.readers.CELLS_PER_CHUNK", 2)  # 1,000-row chunks
    lines = ["id,text"] + [f'{i},"line one\nline two {i}"' for i in range(2_500)]
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    chunks = _read(path)
    assert sum(c.rows for c in chunks) == 2_500
    assert all(key is not None and key.startswith("line one\n") for c in chunks for key in c.columns["text"].keys or [])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"a,a,b\n1,2,3\n", "'a' appears twice"),
        (b"a,b\n1,2\n3\n", ":3: expected 2 fields, found 1"),
        (b"a,b\n1,2\n3,x,4\n", ":3: expected 2 fields, found 3"),
        (b"a,b\n1,2\n\xff\xfe,3\n", ":3: not UTF-8"),
        (b'a,b\n1,2\n1,"open\n3,4\n', "malformed CSV: unexpected end of data"),
    ],
)
def test_bad_csv_names_the_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        _read(path)


def test_json_values_numbers_keys_and_nulls() -> None:
    column = parse_values([1, 2.5, None, True, "x", [1, 2], {"b": 1, "a": 2}, 10**400])
    assert _same(column.numbers, [1, 2.5, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan])
    assert column.keys == [None, None, None, "true", "x", "[1,2]", '{"a":2,"b":1}', None]
    assert parse_values([1, None, 3.5]).keys is None


def test_jsonl_columns_are_the_union_of_keys(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2, "b": "x"}\n{"b": "y"}\n')
    with open_data(path) as reader:
        chunks = list(reader)
        assert reader.columns == ("a", "b")
    assert chunks[0].rows == 3
    assert _same(chunks[0].columns["a"].numbers, [1, 2, np.nan])
    assert chunks[0].columns["b"].keys == [None, "x", "y"]


@pytest.mark.parametrize(
    ("content", "message"),
    [('{"a": 1}\n{"a": \n', ":2: not valid JSON"), ('{"a": 1}\n[1, 2]\n', ":2: expected a JSON object")],
)
def test_bad_jsonl_names_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        _read(path)


def test_parquet_types(tmp_path: Path) -> None:
    import datetime as dt

    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    table = pa.table(
        {
            "i": pa.array([1, None, 3], pa.int64()),
            "f": pa.array([0.5, 1.5, None]),
            "s": pa.array(["a", None, "b"]),
            "d": pa.array(["x", "y", "x"]).dictionary_encode(),
            "b": pa.array([True, False, None]),
            "t": pa.array([dt.date(2026, 1, 2), None, dt.date(2026, 1, 3)]),
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    chunk = _read(path)[0]
    assert _same(chunk.columns["i"].numbers, [1, np.nan, 3])
    assert _same(chunk.columns["f"].numbers, [0.5, 1.5, np.nan])
    assert chunk.columns["s"].keys == ["a", None, "b"]
    assert chunk.columns["d"].keys == ["x", "y", "x"]
    assert chunk.columns["b"].keys == ["true", "false", None]
    assert chunk.columns["t"].keys == ["2026-01-02", None, "2026-01-03"]


def test_parquet_skip_and_corrupt_file(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "t.parquet", {"a": [1, 2], "b": ["x", "y"]})
    assert set(_read(path, skip=frozenset({"b"}))[0].columns) == {"a"}
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="not a readable Parquet file"):
        _read(broken)


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match=r"pip install 'ml-sidecar\[parquet\]'"):
        _read(path)


def test_format_detection(tmp_path: Path) -> None:
    assert detect_format(Path("x.CSV")) == "csv"
    assert detect_format(Path("x.ndjson")) == "jsonl"
    assert detect_format(Path("x.pq")) == "parquet"
    assert detect_format(Path("x.txt"), "csv") == "csv"
    with pytest.raises(OptionError, match="--format"):
        detect_format(Path("x.txt"))
    with pytest.raises(DataError, match="no such file"):
        open_data(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="not a regular file"):
        open_data(tmp_path, "csv")
