"""JSON Lines in chunks: one JSON object per line, parsed with orjson.

The columns are the union of the objects' keys, in the order they first
appear; a key missing from a line is a null there. Blank lines are skipped;
any other line that is not a JSON object is an error naming its line.
Nested values (lists, objects) are category keys in canonical JSON text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from sidecar.profiling.errors import DataError
from sidecar.profiling.readers import Chunk, Column, FileReader, Format, chunk_rows
from sidecar.reference import category_key

__all__ = ["JsonLinesReader", "parse_values"]

_NUMERIC_TYPES = frozenset({int, float, type(None)})
_TEXT_TYPES = frozenset({str, type(None)})


class JsonLinesReader(FileReader):
    """A JSON Lines file, read in chunks of lines.

    Usage::

        with JsonLinesReader(Path("train.jsonl")) as reader:
            for chunk in reader:
                chunk.columns  # the keys seen in this chunk
    """

    format: Format = "jsonl"

    def __init__(self, path: Path, *, skip: frozenset[str] = frozenset()) -> None:
        super().__init__(path)
        self.columns: tuple[str, ...] | None = None  # set once the whole file is read
        self._skip = skip
        self._names: dict[str, None] = {}  # every key seen so far, in first-seen order
        self._line = 1

    def __iter__(self) -> Iterator[Chunk]:
        while block := list(islice(self._file, chunk_rows(len(self._names) or 20))):
            first = self._line
            self._line += len(block)
            records = self._decode(block, first)
            if not records:
                continue
            layouts = set(map(tuple, records))  # each record's keys, in order
            if len(layouts) == 1:
                # Every line has the same keys in the same order (what writers produce): transpose in C.
                (layout,) = layouts
                self._names.update(dict.fromkeys(layout))
                values: dict[str, Sequence[Any]] = dict(
                    zip(layout, zip(*map(dict.values, records), strict=True), strict=True)
                )
            else:
                seen = set().union(*layouts)
                if not seen.issubset(self._names):
                    for record in records:  # in line order, so columns keep their first-seen order
                        self._names.update(dict.fromkeys(record))
                values = {name: [record.get(name) for record in records] for name in self._names if name in seen}
            columns = {name: parse_values(column) for name, column in values.items() if name not in self._skip}
            yield Chunk(len(records), columns)
        self.columns = tuple(self._names)

    def _decode(self, block: list[bytes], first: int) -> list[dict[str, Any]]:
        lines = [line for line in block if not line.isspace()]
        try:
            records = list(map(orjson.loads, lines))
        except orjson.JSONDecodeError:
            records = []
        if len(records) == len(lines) and all(type(record) is dict for record in records):
            return records
        for offset, line in enumerate(block):  # the slow way, only to name the bad line
            if line.isspace():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise DataError(f"{self.path}:{first + offset}: not valid JSON: {exc}") from None
            if not isinstance(record, dict):
                found = type(record).__name__
                raise DataError(f"{self.path}:{first + offset}: expected a JSON object, found {found}")
        raise AssertionError("unreachable: every line decoded")  # pragma: no cover


def parse_values(values: Sequence[Any]) -> Column:
    """Split decoded JSON values into numbers (ints and floats, not booleans) and category keys."""
    kinds = set(map(type, values))
    if kinds <= _NUMERIC_TYPES:
        try:
            return Column(np.array(values, dtype=np.float64))  # None becomes NaN: a null
        except OverflowError:
            pass  # an int too big for a float: the slow way below makes it a null
    if kinds <= _TEXT_TYPES:
        return Column(np.full(len(values), np.nan), list(values))
    numbers = np.full(len(values), np.nan)
    keys: list[str | None] = [None] * len(values)
    for i, value in enumerate(values):
        kind = type(value)
        if kind is int or kind is float:
            try:
                numbers[i] = value
            except OverflowError:
                pass
        elif kind is str:
            keys[i] = value
        elif value is not None:
            keys[i] = category_key(value)
    return Column(numbers, keys)
