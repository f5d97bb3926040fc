"""A build of a few million rows stays in bounded memory (peak RSS of the child process)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from benchmarks.profile_build import run_measured

ROWS = 2_000_000
BLOCK = 100_000
MAX_RSS = 512 * 2**20  # "well under 1 GiB"


def _write(path: Path) -> None:
    # One random block, repeated: formatting 10 million numbers would take longer than profiling them.
    rng = np.random.default_rng(14)
    columns = [list(map("{:.6g}".format, rng.normal(size=BLOCK).tolist())) for _ in range(4)]
    columns.append(list(map(str, rng.integers(0, 5, BLOCK).tolist())))
    block = "".join(",".join(row) + "\n" for row in zip(*columns, strict=True))
    with path.open("w") as file:
        file.write("a,b,c,d,e\n")
        for _ in range(ROWS // BLOCK):
            file.write(block)


@pytest.mark.slow
def test_two_million_rows_in_bounded_memory(tmp_path: Path) -> None:
    data, output = tmp_path / "big.csv", tmp_path / "reference.json"
    _write(data)
    measured = run_measured([sys.executable, "-m", "sidecar", "profile", "build", str(data), "-o", str(output)])
    assert measured.returncode == 0, measured.stderr
    assert measured.max_rss_bytes < MAX_RSS, f"peak RSS {measured.max_rss_bytes / 2**20:.0f} MiB"
    profile = orjson.loads(output.read_bytes())
    assert profile["source"]["rows"] == ROWS
    assert profile["features"]["e"]["kind"] == "categorical"
    assert profile["source"]["quantile_rank_error"]["a"] < 1e-3  # past the exact limit: the sketch
