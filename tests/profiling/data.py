"""Small data files for the profiling tests, the same table in every format."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

Table = Mapping[str, Sequence[Any]]


def sample_table(rows: int = 2_000, seed: int = 7) -> dict[str, list[Any]]:
    """Features of every kind, plus a prediction, a confidence and a target that agree 80 % of the time."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, rows)
    pred = np.where(rng.random(rows) < 0.8, label, 1 - label)
    income = rng.lognormal(10, 1, rows).round(2)
    income_cells: list[Any] = [
        None if missing else value for missing, value in zip(rng.random(rows) < 0.05, income.tolist(), strict=True)
    ]
    return {
        "age": rng.integers(18, 90, rows).tolist(),
        "income": income_cells,
        "country": rng.choice(["US", "DE", "FR", "UK", "JP"], rows, p=[0.4, 0.2, 0.2, 0.1, 0.1]).tolist(),
        "flag": rng.integers(0, 2, rows).tolist(),
        "score": rng.random(rows).round(4).tolist(),
        "pred": pred.tolist(),
        "label": label.tolist(),
    }


def write_csv(path: Path, table: Table) -> Path:
    names = list(table)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(names)
        for row in zip(*(table[name] for name in names), strict=True):
            writer.writerow(["" if value is None else value for value in row])
    return path


def write_jsonl(path: Path, table: Table) -> Path:
    names = list(table)
    with path.open("wb") as file:
        for row in zip(*(table[name] for name in names), strict=True):
            file.write(orjson.dumps(dict(zip(names, row, strict=True))) + b"\n")
    return path


def write_parquet(path: Path, table: Table) -> Path:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    pq.write_table(pa.table({name: list(values) for name, values in table.items()}), path, row_group_size=500)
    return path


WRITERS = {"csv": write_csv, "jsonl": write_jsonl, "parquet": write_parquet}
