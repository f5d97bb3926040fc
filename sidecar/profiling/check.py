"""``ml-sidecar profile check``: a data file against a reference profile, with the sidecar's own drift statistics.

For data that never passes through the proxy, or before it does: a batch
job's input, a day of exported prediction logs, a candidate training set. The
file is read in chunks by the profile builder's readers and counted column by
column into the very windows that count live traffic
(:meth:`DriftTracker.update_columns`), then evaluated once by
:func:`evaluate`. The verdicts are therefore the ones the sidecar would give
if this data were its traffic, every row with weight 1: PSI, KS and
chi-square over the reference bins, ``min_samples``, the dataset-level share.

Columns are matched by name: each profile feature by its own name, and the
outputs and the target by the columns they were built from (the profile's
``source.roles``, which ``--prediction``, ``--confidence`` and ``--target``
override). A feature the data lacks counts as all nulls and is reported as
missing; columns the profile does not know are ignored.

Values are read as the builder read the reference: a numeric feature takes
the cell's number (text that parses as one included), a categorical one the
cell's category key (numbers named as live traffic names them).

Usage::

    result = check_data(load_profile(Path("reference.json")), Path("today.csv"), CheckOptions())
    result.snapshot.verdict          # "drift" when the share of drifted features exceeds drift_share
    print(render_check(result))
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sidecar.drift import ColumnValues, DriftResult, DriftSnapshot, DriftTracker, evaluate
from sidecar.drift.window import as_number
from sidecar.profiling.errors import DataError, OptionError
from sidecar.profiling.progress import Progress
from sidecar.profiling.readers import Column, Format, open_data, row_keys
from sidecar.reference import ReferenceProfile

__all__ = ["CheckOptions", "CheckResult", "check_data", "check_json", "render_check"]

# The whole file counts in one slice of a one-slice window: a table has no time.
_WINDOW_SECONDS = 60.0
_ROLES = ("prediction", "confidence", "target")


@dataclass(frozen=True)
class CheckOptions:
    """How to read the data and judge it; None for a role means the column the profile was built from."""

    format: Format | None = None
    prediction: str | None = None
    confidence: str | None = None
    target: str | None = None
    min_samples: int = 200
    drift_share: float = 0.5

    def problems(self) -> list[str]:
        out = []
        if self.min_samples < 1:
            out.append(f"--min-samples must be at least 1, not {self.min_samples}")
        if not 0.0 <= self.drift_share < 1.0:
            out.append(f"--drift-share must be in [0, 1), not {self.drift_share}")
        return out


@dataclass(frozen=True)
class CheckResult:
    """The snapshot of the whole file, with what was read and what was not found."""

    path: Path
    profile: ReferenceProfile
    snapshot: DriftSnapshot
    rows: int
    seconds: float
    columns: Mapping[str, str]  # the data column read for each output and the target
    missing: tuple[str, ...]  # profile features absent from the data: counted as nulls
    unchecked: tuple[str, ...]  # outputs and the target whose column is absent: not judged


def check_data(
    profile: ReferenceProfile, path: Path, options: CheckOptions, *, progress: Progress | None = None
) -> CheckResult:
    """Read ``path`` once, in chunks, and judge it against ``profile``; raises DataError or OptionError."""
    if problems := options.problems():
        raise OptionError(problems)
    started = time.perf_counter()
    roles = _role_columns(profile, options)
    now = time.time()
    tracker = DriftTracker(
        profile,
        window_seconds=_WINDOW_SECONDS,
        slice_seconds=_WINDOW_SECONDS,
        min_samples=options.min_samples,
        drift_share=options.drift_share,
        clock=lambda: now,
    )
    kinds = {name: dist.kind == "numeric" for name, dist in profile.features.items()}
    output_kinds = {role: dist.kind == "numeric" for role, dist in profile.outputs.items() if role in roles}
    seen: set[str] = set()
    rows = 0
    with open_data(path, options.format) as reader:
        for chunk in reader:
            columns = chunk.columns
            seen.update(columns)
            features = {name: _values(c, kinds[name]) for name, c in columns.items() if name in kinds}
            outputs = {
                role: _values(columns[roles[role]], numeric)
                for role, numeric in output_kinds.items()
                if roles[role] in columns
            }
            labels = None
            if profile.target is not None and roles.get("target") in columns:
                labels = _values(columns[roles["target"]], profile.target.kind == "numeric")
            tracker.update_columns(chunk.rows, features, outputs=outputs or None, labels=labels)
            rows += chunk.rows
            if progress is not None:
                progress.update(reader.fraction(), rows=rows)
    if rows == 0:
        raise DataError(f"{path}: no data rows")
    snapshot = evaluate(tracker)
    missing = tuple(name for name in profile.features if name not in seen)
    unchecked = tuple(role for role, name in roles.items() if name not in seen)
    seconds = time.perf_counter() - started
    return CheckResult(path, profile, snapshot, rows, seconds, roles, missing, unchecked)


def _role_columns(profile: ReferenceProfile, options: CheckOptions) -> dict[str, str]:
    """The data column for each output and the target the profile describes: the option, else the profile's."""
    recorded = profile.source.get("roles")
    recorded = recorded if isinstance(recorded, Mapping) else {}
    described = {role for role in ("prediction", "confidence") if role in profile.outputs}
    if profile.target is not None:
        described.add("target")
    chosen = {"prediction": options.prediction, "confidence": options.confidence, "target": options.target}
    out: dict[str, str] = {}
    for role in _ROLES:
        name = chosen[role] or recorded.get(role)
        if role in described and isinstance(name, str):
            out[role] = name
    return out


def _values(column: Column, numeric: bool) -> ColumnValues:
    """A column as its channel reads it: floats (NaN for a null) or category keys (None for a null)."""
    if not numeric:
        return row_keys(column)
    if column.keys is None:
        return column.numbers
    numbers: NDArray[np.float64] = column.numbers.copy()
    # Text the reader did not take for a number (a JSON string "3.5") is read as live values are.
    for i, key in enumerate(column.keys):
        if key is not None:
            numbers[i] = as_number(key)
    return numbers


def render_check(result: CheckResult) -> str:
    """A readable report: one line per feature, output and the target, then the dataset's verdict."""
    snapshot = result.snapshot
    lines = [
        f"checked {result.path} against reference {result.profile.version}:"
        f" {result.rows:,} rows in {result.seconds:.2f} s",
        f"  {'name':<24} {'kind':<12} {'PSI':>8} {'test':>5} {'p-value':>9}  verdict",
    ]
    lines += [_line(result.name, result) for result in snapshot.features]
    lines += [_line(f"output {o.name}", o) for o in snapshot.outputs]
    if snapshot.label is not None:
        lines.append(_line("target", snapshot.label))
    if result.missing:
        lines.append(f"features not in the data (counted as nulls): {', '.join(result.missing)}")
    if result.unchecked:
        columns = ", ".join(f"{role} ({result.columns[role]})" for role in result.unchecked)
        lines.append(f"not judged, their columns are not in the data: {columns}")
    lines.append(_dataset(snapshot))
    return "\n".join(lines)


def _line(name: str, result: DriftResult) -> str:
    psi, test = result.methods[0], result.methods[1]
    method = {"ks": "KS", "chi2": "chi2"}.get(test.method, test.method)
    return (
        f"  {name:<24} {result.kind:<12} {_number(psi.score, '.4f'):>8} {method:>5}"
        f" {_number(test.pvalue, '.2e'):>9}  {result.verdict}"
    )


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def _dataset(snapshot: DriftSnapshot) -> str:
    judged = [f for f in snapshot.features if f.verdict != "insufficient_data"]
    drifted = sum(f.verdict == "drift" for f in judged)
    if snapshot.drifted_share is None:
        return f"dataset: {snapshot.verdict} (no feature has enough data for a verdict)"
    return (
        f"dataset: {snapshot.verdict} ({drifted} of {len(judged)} features drifted by PSI,"
        f" share {snapshot.drifted_share:.2f}; drift above {snapshot.drift_share:.2f})"
    )


def check_json(result: CheckResult) -> dict[str, Any]:
    """The report as JSON: the snapshot in the shape of ``GET /api/v1/drift``'s ``drift``, and what was read."""
    return {
        "data": str(result.path),
        "reference": {"version": result.profile.version, "content_hash": result.profile.content_hash},
        "rows": result.rows,
        "columns": dict(result.columns),
        "missing": list(result.missing),
        "unchecked": list(result.unchecked),
        "drift": result.snapshot,
    }
