"""Parquet in record batches, through pyarrow (the optional ``parquet`` extra).

Integer, floating and decimal columns are numbers (cast to float64, nulls to
NaN). Strings are keys as they are; booleans become ``"true"``/``"false"``,
dates and times their ISO text, and anything else its canonical JSON text,
the way live JSON traffic will name them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from sidecar.profiling.errors import DataError
from sidecar.profiling.readers import Chunk, Column, Format, chunk_rows
from sidecar.reference import category_key

__all__ = ["INSTALL_HINT", "ParquetReader"]

INSTALL_HINT = "pip install 'ml-sidecar[parquet]'"


class ParquetReader:
    """A Parquet file, read one record batch at a time.

    Usage::

        with ParquetReader(Path("train.parquet")) as reader:
            for chunk in reader:
                ...
    """

    format: Format = "parquet"

    def __init__(self, path: Path, *, skip: frozenset[str] = frozenset()) -> None:
        try:
            import pyarrow as pa  # type: ignore[import-untyped]
            import pyarrow.parquet as pq  # type: ignore[import-untyped]
        except ImportError:
            raise DataError(f"reading Parquet needs pyarrow, which is not installed: {INSTALL_HINT}") from None
        self.path = path
        self._errors: tuple[type[BaseException], ...] = (pa.ArrowException, OSError)
        try:
            self._file = pq.ParquetFile(path)
        except self._errors as exc:
            raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
        names: list[str] = list(self._file.schema_arrow.names)
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            self.close()
            raise DataError(f"{path}: column names appear twice: {', '.join(twice)}")
        self.columns: tuple[str, ...] | None = tuple(names)
        self._keep = [name for name in names if name not in skip]
        self._total = max(int(self._file.metadata.num_rows), 1)
        self._done = 0

    def __iter__(self) -> Iterator[Chunk]:
        batches = self._file.iter_batches(batch_size=chunk_rows(len(self._keep)), columns=self._keep)
        while True:
            try:
                batch = next(batches, None)
            except self._errors as exc:
                raise DataError(f"{self.path}: corrupt Parquet data: {exc}") from None
            if batch is None:
                return
            self._done += batch.num_rows
            columns = {name: arrow_column(batch.column(i)) for i, name in enumerate(batch.schema.names)}
            yield Chunk(batch.num_rows, columns)

    def fraction(self) -> float:
        return min(self._done / self._total, 1.0)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def arrow_column(array: Any) -> Column:
    import pyarrow as pa
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        floats = pc.cast(array, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        return Column(np.asarray(floats, dtype=np.float64))
    values = array.to_pylist()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        keys: list[str | None] = values
    else:
        keys = [None if value is None else _key(value) for value in values]
    return Column(np.full(len(values), np.nan), keys)


def _key(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    try:
        return category_key(value)
    except TypeError:  # bytes and other types JSON has no name for
        return str(value)
