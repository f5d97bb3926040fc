"""``ml-sidecar profile check``: a data file against a reference profile, with the sidecar's own drift statistics.

For data that never passes through the proxy, or before it does: a batch
job's input, a day of exported prediction logs, a candidate training set. The
file is read in chunks by the profile builder's readers and counted column by
column into the very windows that count live traffic
(:meth:`DriftTracker.update_columns`), then evaluated once by
:func:`evaluate`. The verdicts are therefore the ones the sidecar would give
if this data were its traffic, every row with weight 1: PSI, KS and
chi-square over the reference bins with Holm's correction, the effect sizes,
the verdict rule (``verdict``, ``alpha`` and the thresholds, as the
``SIDECAR_DRIFT_*`` settings set them for the sidecar), ``min_samples``, the
dataset-level share.

Columns are matched by name: each profile feature by its own name, and the
outputs and the target by the columns they were built from (the profile's
``source.roles``, which ``--prediction``, ``--confidence`` and ``--target``
override). A feature the data lacks counts as all nulls and is reported as
missing; columns the profile does not know are ignored. An output or target
whose recorded column the data lacks is not judged, and is listed.

A column named by an option is a promise, so a typo is an error
(:class:`OptionError`, exit 2), as it is for ``profile build``: an option for
a role the profile does not describe (``--target`` on a profile built without
one), or naming a column that neither the data nor the profile has. The error
names the option, the value, the data's columns and the closest match. It is
raised before reading when the format has a header (CSV, Parquet), after the
last row for JSON Lines, which learns its columns as it reads.

The verdict, which is the exit status of ``profile check``: the data has
drifted when the dataset has (more than ``drift_share`` of the judged features
have the verdict drift), or when an output (``prediction``, ``confidence``) or
the target has. A model whose inputs look the same but whose
predictions or labels moved is the drift a gate exists to stop.
``ignore_output_drift`` (``--ignore-output-drift``) judges the features alone;
the outputs are still reported.

Values are read as the builder read the reference: a numeric feature takes
the cell's number (text that parses as one included), a categorical one the
cell's category key (numbers named as live traffic names them).

Usage::

    result = check_data(load_profile(Path("reference.json")), Path("today.csv"), CheckOptions())
    result.snapshot.verdict          # "drift" when the share of drifted features exceeds drift_share
    result.drifted_outputs           # ("prediction",): the outputs and target whose verdict is drift
    result.drifted                   # either of them, unless ignore_output_drift: exit status 3
    print(render_check(result))
"""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sidecar.drift import (
    ALPHA,
    EFFECT_THRESHOLD,
    RULES,
    ColumnValues,
    DriftResult,
    DriftSnapshot,
    DriftTracker,
    Rule,
    VerdictRule,
    evaluate,
)
from sidecar.drift.window import as_number
from sidecar.profiling.errors import DataError, OptionError
from sidecar.profiling.progress import Progress
from sidecar.profiling.readers import Column, Format, open_data, row_keys
from sidecar.reference import ReferenceProfile

__all__ = ["CheckOptions", "CheckResult", "check_data", "check_json", "render_check"]

# The whole file counts in one slice of a one-slice window: a table has no time.
_WINDOW_SECONDS = 60.0
_ROLES = ("prediction", "confidence", "target")
_LISTED = 20  # data columns named in an unknown-column error


@dataclass(frozen=True)
class CheckOptions:
    """How to read the data and judge it; None for a role means the column the profile was built from.

    ``verdict``, ``alpha``, ``wasserstein`` and ``jensenshannon`` make the
    verdict rule (:class:`VerdictRule`), with the sidecar's defaults.
    """

    format: Format | None = None
    prediction: str | None = None
    confidence: str | None = None
    target: str | None = None
    min_samples: int = 200
    drift_share: float = 0.5
    ignore_output_drift: bool = False
    verdict: Rule = "combined"
    alpha: float = ALPHA
    wasserstein: float = EFFECT_THRESHOLD
    jensenshannon: float = EFFECT_THRESHOLD

    @property
    def rule(self) -> VerdictRule:
        return VerdictRule(self.verdict, self.alpha, self.wasserstein, self.jensenshannon)

    @property
    def roles(self) -> dict[str, str]:
        """Column name by role, for the roles given an option."""
        given = {"prediction": self.prediction, "confidence": self.confidence, "target": self.target}
        return {role: name for role, name in given.items() if name is not None}

    def problems(self) -> list[str]:
        out = []
        if self.min_samples < 1:
            out.append(f"--min-samples must be at least 1, not {self.min_samples}")
        if not 0.0 <= self.drift_share < 1.0:
            out.append(f"--drift-share must be in [0, 1), not {self.drift_share}")
        if self.verdict not in RULES:
            out.append(f"--verdict must be one of {', '.join(RULES)}, not {self.verdict!r}")
        if not 0.0 < self.alpha < 1.0:
            out.append(f"--alpha must be between 0 and 1, not {self.alpha}")
        thresholds = (("--wasserstein-threshold", self.wasserstein), ("--jensenshannon-threshold", self.jensenshannon))
        for option, threshold in thresholds:
            if not (math.isfinite(threshold) and threshold > 0.0):
                out.append(f"{option} must be a positive number, not {threshold}")
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
    ignore_output_drift: bool = False

    @property
    def drifted_outputs(self) -> tuple[str, ...]:
        """The outputs (``prediction``, ``confidence``) and the ``target`` whose verdict is drift."""
        snapshot = self.snapshot
        judged = [*snapshot.outputs, *([snapshot.label] if snapshot.label is not None else [])]
        # The snapshot names the target's channel "label", as the live tracker does; the report says "target".
        return tuple("target" if r is snapshot.label else r.name for r in judged if r.verdict == "drift")

    @property
    def drifted(self) -> bool:
        """The verdict ``profile check`` exits 3 on: the dataset drifted, or an output or the target did."""
        return self.snapshot.verdict == "drift" or (not self.ignore_output_drift and bool(self.drifted_outputs))


def check_data(
    profile: ReferenceProfile, path: Path, options: CheckOptions, *, progress: Progress | None = None
) -> CheckResult:
    """Read ``path`` once, in chunks, and judge it against ``profile``; raises DataError or OptionError."""
    if problems := options.problems() + _undescribed_roles(profile, options):
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
        rule=options.rule,
        clock=lambda: now,
    )
    kinds = {name: dist.kind == "numeric" for name, dist in profile.features.items()}
    output_kinds = {role: dist.kind == "numeric" for role, dist in profile.outputs.items() if role in roles}
    seen: set[str] = set()
    rows = 0
    with open_data(path, options.format) as reader:
        header = reader.columns
        if header is not None and (unknown := _unknown_columns(profile, options, header)):
            raise OptionError(unknown)  # before reading, when the header tells
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
        read = reader.columns or ()  # JSON Lines knows its columns now, at the end
    if header is None and (unknown := _unknown_columns(profile, options, read)):
        raise OptionError(unknown)
    if rows == 0:
        raise DataError(f"{path}: no data rows")
    snapshot = evaluate(tracker)
    missing = tuple(name for name in profile.features if name not in seen)
    unchecked = tuple(role for role, name in roles.items() if name not in seen)
    seconds = time.perf_counter() - started
    return CheckResult(path, profile, snapshot, rows, seconds, roles, missing, unchecked, options.ignore_output_drift)


def _undescribed_roles(profile: ReferenceProfile, options: CheckOptions) -> list[str]:
    """An option for an output or target the profile has no reference for: nothing to judge it against."""
    described = _described(profile)
    return [
        f"--{role} {name!r}: the profile has no {role} {'' if role == 'target' else 'output '}to judge it against"
        f" (it was built without --{role})"
        for role, name in options.roles.items()
        if role not in described
    ]


def _unknown_columns(profile: ReferenceProfile, options: CheckOptions, columns: Sequence[str]) -> list[str]:
    """An option naming a column that neither the data nor the profile has: a typo, by every likelihood.

    A column the profile knows (a feature, or the column an output or the
    target was built from) but the data lacks is not an error: the output or
    target is not judged and is listed, as when no option names it.
    """
    recorded = _recorded(profile)
    known = {*columns, *profile.features, *recorded.values()}
    out = []
    for role, name in options.roles.items():
        if name in known:
            continue
        problem = f"--{role} {name!r}: neither DATA nor the profile has such a column"
        close = difflib.get_close_matches(name, sorted(known), n=1)
        if close:
            problem += f"; did you mean {close[0]!r}?"
        out.append(f"{problem} (DATA's columns: {_listing(columns)})")
    return out


def _listing(columns: Sequence[str]) -> str:
    # A wide file has hundreds of columns: enough of them to spot a near miss, not a screenful.
    shown = ", ".join(repr(name) for name in columns[:_LISTED])
    more = len(columns) - _LISTED
    return f"{shown}, and {more} more" if more > 0 else shown or "none"


def _recorded(profile: ReferenceProfile) -> dict[str, str]:
    """The data column each output and the target was built from, as the profile recorded it."""
    recorded = profile.source.get("roles")
    if not isinstance(recorded, Mapping):
        return {}
    return {role: name for role, name in recorded.items() if isinstance(role, str) and isinstance(name, str)}


def _described(profile: ReferenceProfile) -> set[str]:
    """The roles the profile has a reference distribution for."""
    described = {role for role in ("prediction", "confidence") if role in profile.outputs}
    if profile.target is not None:
        described.add("target")
    return described


def _role_columns(profile: ReferenceProfile, options: CheckOptions) -> dict[str, str]:
    """The data column for each output and the target the profile describes: the option, else the profile's."""
    recorded = _recorded(profile)
    described = _described(profile)
    chosen = options.roles
    out: dict[str, str] = {}
    for role in _ROLES:
        name = chosen.get(role) or recorded.get(role)
        if role in described and name is not None:
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
        f"  {'name':<24} {'kind':<12} {'PSI':>8} {'test':>5} {'p-value':>9} {'p (Holm)':>9} {'effect':>9}  verdict",
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
    lines.append(_rule(snapshot.rule))
    lines.append(_dataset(snapshot))
    if (outputs := _outputs(result)) is not None:
        lines.append(outputs)
    return "\n".join(lines)


# The effect sizes' short names in the report.
_EFFECTS = {"wasserstein": "W", "jensenshannon": "JS"}


def _line(name: str, result: DriftResult) -> str:
    psi, test, effect = result.methods
    method = {"ks": "KS", "chi2": "chi2"}.get(test.method, test.method)
    size = "-" if effect.score is None else f"{_EFFECTS[effect.method]} {_number(effect.score, '.3f')}"
    return (
        f"  {name:<24} {result.kind:<12} {_number(psi.score, '.4f'):>8} {method:>5}"
        f" {_number(test.pvalue, '.2e'):>9} {_number(test.corrected_pvalue, '.2e'):>9} {size:>9}  {result.verdict}"
    )


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def _rule(rule: VerdictRule) -> str:
    """How the verdicts above were reached, in one line."""
    if rule.name == "psi":
        return "verdicts by PSI: drift above 0.2, moderate above 0.1"
    return (
        f"verdicts by the combined rule: drift when real (Holm-corrected p < {rule.alpha:g}) and material"
        f" (W >= {rule.wasserstein:g}, JS >= {rule.jensenshannon:g}), or when PSI > 0.2; moderate when real and"
        " PSI > 0.1 or the effect is above half its threshold"
    )


def _by(snapshot: DriftSnapshot) -> str:
    return "by PSI" if snapshot.rule.name == "psi" else "by the combined rule"


def _dataset(snapshot: DriftSnapshot) -> str:
    judged = [f for f in snapshot.features if f.verdict != "insufficient_data"]
    drifted = sum(f.verdict == "drift" for f in judged)
    if snapshot.drifted_share is None:
        return f"dataset: {snapshot.verdict} (no feature has enough data for a verdict)"
    return (
        f"dataset: {snapshot.verdict} ({drifted} of {len(judged)} features drifted {_by(snapshot)},"
        f" share {snapshot.drifted_share:.2f}; drift above {snapshot.drift_share:.2f})"
    )


def _outputs(result: CheckResult) -> str | None:
    """The outputs' and target's part of the verdict, or None when the profile has neither."""
    snapshot = result.snapshot
    if not snapshot.outputs and snapshot.label is None:
        return None
    drifted = result.drifted_outputs
    if not drifted:
        return f"outputs: no_drift (no output or target drifted {_by(snapshot)})"
    effect = "ignored, --ignore-output-drift" if result.ignore_output_drift else "the check fails on it"
    return f"outputs: drift ({', '.join(drifted)} drifted {_by(snapshot)}; {effect})"


def check_json(result: CheckResult) -> dict[str, Any]:
    """The report as JSON: the snapshot in the shape of ``GET /api/v1/drift``'s ``drift``, and what was read.

    ``verdict`` is the check's own, the one its exit status follows:
    ``"drift"`` when :attr:`CheckResult.drifted`, else the dataset's verdict.
    """
    return {
        "verdict": "drift" if result.drifted else result.snapshot.verdict,
        "drifted_outputs": list(result.drifted_outputs),
        "ignore_output_drift": result.ignore_output_drift,
        "data": str(result.path),
        "reference": {"version": result.profile.version, "content_hash": result.profile.content_hash},
        "rows": result.rows,
        "columns": dict(result.columns),
        "missing": list(result.missing),
        "unchecked": list(result.unchecked),
        "drift": result.snapshot,
    }
