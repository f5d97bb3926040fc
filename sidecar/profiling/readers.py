"""Chunked readers for CSV, JSON Lines and Parquet, all giving the same row-aligned chunks.

Every reader turns a slice of rows into one :class:`Column` per column:
``numbers`` holds the value where it is a number and NaN elsewhere, and
``keys`` holds the category key where the value is not a number (a string as
it is, anything else through :func:`sidecar.reference.category_key`, so that
``true`` becomes ``"true"`` as it will for live traffic). A row that is in
neither is a null.

What counts as a number, per format:

- **CSV** has no types: a cell is a number when Python's ``float()`` parses
  it; ``""``, ``NA``, ``N/A``, ``NaN``, ``nan``, ``null``, ``NULL`` and
  ``None`` are nulls; anything else is text, kept as it is.
- **JSON Lines**: ints and floats are numbers (not booleans); ``null`` and a
  missing key are nulls; strings, booleans, lists and objects are keys.
- **Parquet**: integer, floating and decimal columns are numbers; every other
  type (strings, booleans, dates, nested) gives keys.

NaN and infinities count as nulls: they have no place in bin edges or means.

Usage::

    with open_data(Path("train.csv"), skip=frozenset({"id"})) as reader:
        for chunk in reader:
            chunk.columns["age"].numbers  # float64, one per row
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, Protocol, Self, get_args

import numpy as np
from numpy.typing import NDArray

from sidecar.profiling.errors import DataError, OptionError
from sidecar.reference import category_key

__all__ = ["Chunk", "Column", "Format", "Reader", "CELLS_PER_CHUNK", "detect_format", "open_data", "row_keys"]

Format = Literal["csv", "jsonl", "parquet"]
FORMATS: tuple[str, ...] = get_args(Format)
EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}

# About a million cells per chunk: big enough that numpy, not the interpreter,
# does most of the work, small enough that a chunk's strings stay under ~100 MiB.
CELLS_PER_CHUNK = 1_000_000


def chunk_rows(columns: int) -> int:
    return max(1_000, CELLS_PER_CHUNK // max(columns, 1))


@dataclass(frozen=True)
class Column:
    """One column of one chunk, row-aligned; a row with neither a number nor a key is a null."""

    numbers: NDArray[np.float64]
    keys: list[str | None] | None = None  # None when no row of the chunk has a key


def row_keys(column: Column) -> list[str | None]:
    """The category key of every row (None for a null), naming numbers as live traffic would."""
    numbers = column.numbers
    finite = np.isfinite(numbers)
    names = {value: category_key(value) for value in np.unique(numbers[finite]).tolist()}
    keys: list[str | None] = [
        names[value] if ok else None for value, ok in zip(numbers.tolist(), finite.tolist(), strict=True)
    ]
    if column.keys is not None:
        keys = [key if key is not None else number for key, number in zip(column.keys, keys, strict=True)]
    return keys


@dataclass(frozen=True)
class Chunk:
    rows: int
    columns: dict[str, Column]


class Reader(Protocol):
    """An open data file that yields :class:`Chunk` objects in file order."""

    format: Format
    # Known before reading for CSV (header) and Parquet (schema); JSON Lines learns them as it goes.
    columns: tuple[str, ...] | None

    def __iter__(self) -> Iterator[Chunk]: ...

    def fraction(self) -> float:
        """How much of the file has been read, from 0 to 1."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Reader: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def detect_format(path: Path, override: str | None = None) -> Format:
    """The format named by ``override``, else by the file's extension."""
    if override is not None:
        if override not in FORMATS:
            raise OptionError([f"--format {override!r} is not one of {', '.join(FORMATS)}"])
        return override  # type: ignore[return-value]  # checked against FORMATS just above
    found = EXTENSIONS.get(path.suffix.lower())
    if found is None:
        known = ", ".join(EXTENSIONS)
        raise OptionError(
            [f"cannot tell the format of {path} from its extension (known: {known}); pass --format csv|jsonl|parquet"]
        )
    return found


def open_data(path: Path, format: Format | None = None, *, skip: frozenset[str] = frozenset()) -> Reader:
    """Open ``path`` for chunked reading; columns in ``skip`` are not converted (they come out empty)."""
    fmt = format or detect_format(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    if fmt == "csv":
        from sidecar.profiling.csvfile import CsvReader

        return CsvReader(path, skip=skip)
    if fmt == "jsonl":
        from sidecar.profiling.jsonl import JsonLinesReader

        return JsonLinesReader(path, skip=skip)
    from sidecar.profiling.parquet import ParquetReader

    return ParquetReader(path, skip=skip)


def open_binary(path: Path) -> BinaryIO:
    """Open a file for binary reading, turning OS errors into :class:`DataError`."""
    try:
        return path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror}") from exc


class FileReader:
    """Context-manager plumbing for readers over one open binary file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open_binary(path)
        try:
            self._size = max(path.stat().st_size, 1)
        except OSError as exc:
            self._file.close()
            raise DataError(f"{path}: cannot open: {exc.strerror}") from exc

    def fraction(self) -> float:
        return min(self._file.tell() / self._size, 1.0)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
