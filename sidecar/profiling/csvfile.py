"""CSV in chunks: numpy's C parser while every cell is a number, the csv module otherwise.

A chunk is a run of whole records read as bytes: a line break inside a
quoted field is not a record break, which (RFC 4180 doubles a quote inside a
field) is the case exactly when the quotes before it are odd in number.

While every column has held only numbers, a chunk without quotes goes to
``np.loadtxt`` (about twice as fast as ``csv`` plus ``float()``). The first
chunk it refuses (an empty cell, text, a ragged row) turns that path off for
the rest of the file, and that chunk and every later one go through
:mod:`csv`, where ragged rows are reported with their line number.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator, Sequence
from itertools import islice, repeat
from pathlib import Path
from typing import NoReturn

import numpy as np

from sidecar.profiling.errors import DataError
from sidecar.profiling.readers import Chunk, Column, FileReader, Format, chunk_rows

__all__ = ["NULLS", "CsvReader", "parse_cells"]

NULLS = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"})
_AS_NAN = dict.fromkeys(NULLS, "nan")
MAX_RECORD_LINES = 10_000  # lines one quoted field may span


class CsvReader(FileReader):
    """A CSV file with a header row, read in chunks of whole records.

    Usage::

        with CsvReader(Path("train.csv")) as reader:
            reader.columns  # from the header
            for chunk in reader:
                ...
    """

    format: Format = "csv"

    def __init__(self, path: Path, *, skip: frozenset[str] = frozenset()) -> None:
        super().__init__(path)
        self._line = 1  # line number of the next line to read, for messages
        try:
            header = self._records(1)
        except BaseException:
            self.close()
            raise
        if header is None:
            self.close()
            raise DataError(f"{path}: empty file, expected a header row")
        names = next(csv.reader(io.StringIO(header[1], newline="")), [])
        problems = [f"column {i + 1} has an empty name" for i, name in enumerate(names) if not name]
        problems += [f"column name {name!r} appears twice" for name in sorted({n for n in names if names.count(n) > 1})]
        if problems:
            self.close()
            raise DataError(f"{path}:1: bad header: {'; '.join(problems)}")
        self.columns: tuple[str, ...] | None = tuple(names)
        self._names = tuple(names)
        self._keep = [(i, name) for i, name in enumerate(names) if name not in skip]
        self._numeric_path = True

    def __iter__(self) -> Iterator[Chunk]:
        size = chunk_rows(len(self._names))
        while (records := self._records(size)) is not None:
            first_line, text, open_quote = records
            if not text or text.isspace():
                continue
            if '"' in text or text.count("\r") != text.count("\r\n"):
                yield self._parsed(text, first_line, strict=open_quote)  # quoting, odd line breaks: csv knows
                continue
            chunk = self._numeric(text) if self._numeric_path else None
            yield chunk if chunk is not None else self._split(text, first_line)

    def _records(self, lines: int) -> tuple[int, str, bool] | None:
        """The next ``lines`` lines, plus as many as it takes to close an open quote; None at the end.

        The flag says a quote is still open: a stray one inside an unquoted
        field, or a field that never ends (a strict parse tells which).
        """
        block = list(islice(self._file, lines))
        if not block:
            return None
        data = b"".join(block)
        quotes = data.count(b'"')
        extra = 0
        # A stray quote inside an unquoted field (5'10") also makes the count odd: stop
        # looking after MAX_RECORD_LINES and let the csv module judge the chunk.
        while quotes % 2 and extra < MAX_RECORD_LINES:
            more = next(self._file, None)
            if more is None:
                break
            extra += 1
            block.append(more)
            data += more
            quotes += more.count(b'"')
        first = self._line
        self._line += len(block)
        try:
            text = data.decode("utf-8-sig" if first == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            line = first + data[: exc.start].count(b"\n")
            raise DataError(f"{self.path}:{line}: not UTF-8 text ({exc.reason})") from None
        return first, text, quotes % 2 == 1

    def _numeric(self, text: str) -> Chunk | None:
        try:
            table = np.loadtxt(
                io.StringIO(text), delimiter=",", quotechar='"', comments=None, dtype=np.float64, ndmin=2
            )
        except ValueError:
            self._numeric_path = False
            return None
        if table.shape[1] != len(self._names):
            self._numeric_path = False
            return None
        by_column = np.ascontiguousarray(table.T)
        return Chunk(table.shape[0], {name: Column(by_column[i]) for i, name in self._keep})

    def _split(self, text: str, first_line: int) -> Chunk:
        """A chunk without quotes: plain ``str.split`` gives what the csv module would, ten times faster."""
        lines = (text.replace("\r\n", "\n") if "\r" in text else text).split("\n")
        if "" in lines:
            lines = [line for line in lines if line]  # blank lines (and the final newline), as csv skips them
        if not lines:
            return Chunk(0, {})
        width = len(self._names)
        if set(map(str.count, lines, repeat(",", len(lines)))) != {width - 1}:
            self._ragged(text, first_line)
        cells = ",".join(lines).split(",")
        return Chunk(len(lines), {name: parse_cells(cells[i::width]) for i, name in self._keep})

    def _parsed(self, text: str, first_line: int, *, strict: bool = False) -> Chunk:
        reader = csv.reader(io.StringIO(text, newline=""), strict=strict)
        width = len(self._names)
        try:
            rows = [row for row in reader if row]
        except csv.Error as exc:
            raise DataError(f"{self.path}:{first_line + reader.line_num - 1}: malformed CSV: {exc}") from None
        if set(map(len, rows)) - {width}:
            self._ragged(text, first_line)
        if not rows:
            return Chunk(0, {})
        cells = list(zip(*rows, strict=True))
        return Chunk(len(rows), {name: parse_cells(cells[i]) for i, name in self._keep})

    def _ragged(self, text: str, first_line: int) -> NoReturn:
        reader = csv.reader(io.StringIO(text, newline=""))
        with contextlib.suppress(csv.Error):  # the chunk's caller reported csv errors already
            for row in reader:
                if row and len(row) != len(self._names):
                    line = first_line + reader.line_num - 1
                    raise DataError(f"{self.path}:{line}: expected {len(self._names)} fields, found {len(row)}")
        raise DataError(f"{self.path}:{first_line}: rows with the wrong number of fields in this chunk")


def parse_cells(cells: Sequence[str]) -> Column:
    """Numbers where ``float()`` parses the cell, nulls for :data:`NULLS`, the cell itself as a key otherwise."""
    try:
        # The common case, all numbers or nulls, runs in C: nulls become "nan", then NaN.
        return Column(np.fromiter(map(float, map(_AS_NAN.get, cells, cells)), np.float64, len(cells)))
    except ValueError:
        pass
    # Parse each distinct cell once: text columns repeat their values.
    parsed = {cell: _parse_cell(cell) for cell in set(cells)}
    values = [parsed[cell] for cell in cells]
    numbers = np.fromiter((v if isinstance(v, float) else np.nan for v in values), np.float64, len(values))
    keys = [v if isinstance(v, str) else None for v in values]
    return Column(numbers, keys)


def _parse_cell(cell: str) -> float | str | None:
    if cell in NULLS:
        return None
    try:
        return float(cell)
    except ValueError:
        return cell
