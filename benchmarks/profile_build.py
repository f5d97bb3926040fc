"""How fast does ``ml-sidecar profile build`` go, and in how much memory?

Writes a CSV into a temporary directory, runs ``python -m sidecar profile
build`` on it as a child process, and reports rows/s and the child's peak
RSS (``ru_maxrss`` from ``os.wait4``, for that one child).

Two shapes: ``mixed`` (16 float columns, one with 5 % empty cells, 2 integer
code columns, 2 string columns: the csv-module path) and ``numeric`` (20
float columns, no empty cells: numpy's ``loadtxt`` path).

Usage::

    python -m benchmarks.profile_build                   # 1M rows x 20 columns, both shapes
    python -m benchmarks.profile_build --rows 10000000   # 10M rows (the file repeats a 1M-row block)
    python -m benchmarks.profile_build --shape numeric --json results.json

Formatting 20 million random numbers as text takes longer than profiling
them, so files above 1M rows repeat one 1M-row block; the parsing, counting
and sketching work per row is the same.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["Measured", "Result", "main", "run_measured", "write_csv"]

BLOCK_ROWS = 1_000_000
COUNTRIES = ("US", "DE", "FR", "UK", "JP", "BR", "IN", "CN")
SHAPES = ("mixed", "numeric")
# A bound on memory, not a speed target: peak RSS does not depend on how fast
# the machine is. Rows/s has no target yet: there is no baseline in this run
# to state one as a ratio to (docs/architecture.md, "Performance targets").
MAX_RSS_BYTES = 1 << 30


@dataclass(frozen=True)
class Measured:
    returncode: int
    seconds: float
    cpu_seconds: float  # user + system time of the child: what the wall time would be on an idle core
    max_rss_bytes: int
    stderr: str


@dataclass(frozen=True)
class Result:
    shape: str
    rows: int
    columns: int
    file_bytes: int
    seconds: float  # the whole child process, interpreter start included
    rows_per_second: float  # as the build reports it: reading and profiling only
    rows_per_cpu_second: float  # rows / (user + system time of the whole child)
    max_rss_mib: float


# A small interpreter in between: a child's ru_maxrss also counts the memory of
# the process it was forked from (Linux keeps the high-water mark across
# exec), so the measured child must be forked from something small.
_WRAPPER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as report:
    report.write(f"{child.returncode} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
"""


def run_measured(command: Sequence[str]) -> Measured:
    """Run a child process; return its exit code, wall time, stderr, and its own peak RSS."""
    with tempfile.TemporaryDirectory(prefix="measured-") as directory:
        report, err = Path(directory) / "report", Path(directory) / "stderr"
        started = time.perf_counter()
        with err.open("wb") as stderr:
            subprocess.run(
                [sys.executable, "-c", _WRAPPER, str(report), *command],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                check=True,
            )
        seconds = time.perf_counter() - started
        code, max_rss_kib, cpu = report.read_text().split()  # ru_maxrss is in KiB on Linux
        return Measured(int(code), seconds, float(cpu), int(max_rss_kib) * 1024, err.read_text(errors="replace"))


def _block(shape: str, rows: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    columns: list[list[str]] = []
    floats = 20 if shape == "numeric" else 16
    for i in range(floats):
        values = rng.lognormal(3, 1, rows) if i % 2 else rng.normal(100, 15, rows)
        text = list(map("{:.6g}".format, values.tolist()))
        if shape == "mixed" and i == 0:
            for index in np.flatnonzero(rng.random(rows) < 0.05).tolist():
                text[index] = ""
        columns.append(text)
    if shape == "mixed":
        columns += [list(map(str, rng.integers(0, 10, rows).tolist())) for _ in range(2)]
        columns += [[COUNTRIES[i] for i in rng.integers(0, len(COUNTRIES), rows).tolist()] for _ in range(2)]
    return "".join(",".join(row) + "\n" for row in zip(*columns, strict=True))


def write_csv(path: Path, *, shape: str, rows: int, seed: int = 0) -> int:
    """Write ``rows`` rows of the given shape (20 columns); returns the file size in bytes."""
    floats = 20 if shape == "numeric" else 16
    names = [f"f{i}" for i in range(floats)] + ([] if shape == "numeric" else ["code0", "code1", "country", "region"])
    block = _block(shape, min(rows, BLOCK_ROWS), seed)
    with path.open("w") as file:
        file.write(",".join(names) + "\n")
        for _ in range(rows // BLOCK_ROWS):
            file.write(block)
        if rows % BLOCK_ROWS and rows > BLOCK_ROWS:
            file.write("".join(block.splitlines(keepends=True)[: rows % BLOCK_ROWS]))
        elif rows < BLOCK_ROWS:
            file.write(block)
    return path.stat().st_size


def measure(shape: str, rows: int, directory: Path) -> Result:
    data = directory / f"{shape}.csv"
    size = write_csv(data, shape=shape, rows=rows)
    output = directory / f"{shape}.json"
    command = [sys.executable, "-m", "sidecar", "profile", "build", str(data), "--output", str(output)]
    measured = run_measured(command)
    if measured.returncode != 0:
        raise SystemExit(f"profile build failed ({measured.returncode}):\n{measured.stderr}")
    data.unlink()
    reported = re.search(r"\(([\d,]+) rows/s\)", measured.stderr)
    return Result(
        shape=shape,
        rows=rows,
        columns=20,
        file_bytes=size,
        seconds=round(measured.seconds, 2),
        rows_per_second=float(reported.group(1).replace(",", "")) if reported else rows / measured.seconds,
        rows_per_cpu_second=round(rows / measured.cpu_seconds),
        max_rss_mib=round(measured.max_rss_bytes / 2**20, 1),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=BLOCK_ROWS, help="rows per file (default 1,000,000)")
    parser.add_argument("--shape", choices=(*SHAPES, "both"), default="both")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    shapes = SHAPES if args.shape == "both" else (args.shape,)
    results = []
    with tempfile.TemporaryDirectory(prefix="profile-build-") as directory:
        for shape in shapes:
            result = measure(shape, args.rows, Path(directory))
            results.append(result)
            print(
                f"{shape:8} {result.rows:>12,} rows x {result.columns} columns  {result.file_bytes / 2**20:8.1f} MiB"
                f"  {result.seconds:7.2f} s  {result.rows_per_second:>9,.0f} rows/s"
                f"  {result.rows_per_cpu_second:>9,.0f} rows/cpu-s  peak RSS {result.max_rss_mib:7.1f} MiB"
            )
    print(
        f"(seconds: the whole child process; rows/s: as the build reports it (wall clock); rows/cpu-s: per second"
        f" of the child's CPU time, start-up included, which a busy machine does not distort. No speed target"
        f" yet; the memory bound: peak RSS under {MAX_RSS_BYTES >> 20} MiB)"
    )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
