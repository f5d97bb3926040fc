"""Build a :class:`~sidecar.reference.ReferenceProfile` from a data file in one streaming pass.

Every column gets a :class:`ColumnProfiler`; the ``--prediction`` and
``--confidence`` columns become ``outputs["prediction"]`` and
``outputs["confidence"]``, the ``--target`` column ``target``, and the rest
``features``. With both a target and a prediction the profile also carries
the model's baseline performance (see :mod:`sidecar.profiling.baseline`).

Memory is bounded by the chunk (about a million cells), plus per column the
numbers kept for exact quantiles (at most ``EXACT_LIMIT``, fewer when there
are more than 20 columns: ``EXACT_BUDGET`` numbers in all), a quantile
sketch (~2.5 MiB at 10 million rows) and at most 20,000 category keys.

The default ``version`` is the build's UTC date and the first 8 hex digits
of the hash of the profile's content (without version, date or source), so
two builds from the same data and options share it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sidecar.profiling.baseline import Baseline
from sidecar.profiling.columns import EXACT_LIMIT, ColumnProfiler, Finished
from sidecar.profiling.errors import DataError, OptionError
from sidecar.profiling.progress import Progress
from sidecar.profiling.readers import Format, detect_format, open_data
from sidecar.reference import Distribution, Kind, ReferenceProfile

__all__ = [
    "EXACT_BUDGET",
    "MAX_BINS",
    "MAX_CATEGORIES",
    "BuildOptions",
    "BuildResult",
    "build_profile",
    "write_profile",
]

EXACT_BUDGET = 20_000_000  # numbers kept for exact quantiles, over all columns (160 MB)
MIN_EXACT = 10_000
# Bins and categories become values of the ``bin`` metric label: keep them few.
MAX_BINS = 100
MAX_CATEGORIES = 1_000


@dataclass(frozen=True)
class BuildOptions:
    """What to profile and how; the command line's options, checked by :meth:`problems`.

    Usage::

        options = BuildOptions(bins=10, prediction="score", target="label", exclude=frozenset({"id"}))
        result = build_profile(Path("train.csv"), options)
    """

    format: Format | None = None
    bins: int = 10
    max_categories: int = 50
    categorical: frozenset[str] = frozenset()
    numeric: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    prediction: str | None = None
    confidence: str | None = None
    target: str | None = None
    positive_label: str | None = None
    version: str | None = None
    exact_limit: int = EXACT_LIMIT

    @property
    def roles(self) -> dict[str, str]:
        """Column name by option, for the columns given a role."""
        given = {"--prediction": self.prediction, "--confidence": self.confidence, "--target": self.target}
        return {option: name for option, name in given.items() if name is not None}

    def problems(self) -> list[str]:
        out = []
        if not 2 <= self.bins <= MAX_BINS:
            out.append(f"--bins must be between 2 and {MAX_BINS}, not {self.bins}")
        if not 1 <= self.max_categories <= MAX_CATEGORIES:
            out.append(f"--max-categories must be between 1 and {MAX_CATEGORIES}, not {self.max_categories}")
        for name in sorted(self.categorical & self.numeric):
            out.append(f"column {name!r} is in both --categorical and --numeric")
        seen: dict[str, str] = {}
        for option, name in self.roles.items():
            if name in seen:
                out.append(f"column {name!r} is given to both {seen[name]} and {option}")
            seen.setdefault(name, option)
            if name in self.exclude:
                out.append(f"column {name!r} is given to {option} and to --exclude")
        if self.positive_label is not None and (self.target is None or self.prediction is None):
            out.append("--positive-label needs both --target and --prediction")
        if self.version is not None and not self.version.strip():
            out.append("--version must not be empty")
        return out

    def unknown_columns(self, columns: Sequence[str]) -> list[str]:
        known = set(columns)
        named = [("--categorical", n) for n in sorted(self.categorical)] + [
            ("--numeric", n) for n in sorted(self.numeric)
        ]
        named += [("--exclude", n) for n in sorted(self.exclude)] + [(o, n) for o, n in self.roles.items()]
        return [f"{option} {name!r}: DATA has no such column" for option, name in named if name not in known]


@dataclass(frozen=True)
class BuildResult:
    profile: ReferenceProfile
    rows: int
    seconds: float
    warnings: tuple[str, ...] = field(default=())

    @property
    def kinds(self) -> dict[str, int]:
        """How many profiled columns are numeric and categorical."""
        every = [*self.profile.features.values(), *self.profile.outputs.values()]
        every += [self.profile.target] if self.profile.target is not None else []
        return {kind: sum(d.kind == kind for d in every) for kind in ("numeric", "categorical")}


def build_profile(
    path: Path,
    options: BuildOptions | None = None,
    *,
    progress: Progress | None = None,
    now: dt.datetime | None = None,
) -> BuildResult:
    """Read ``path`` once, in chunks, and return its profile; raises DataError or OptionError."""
    options = options or BuildOptions()
    if problems := options.problems():
        raise OptionError(problems)
    fmt = detect_format(path, options.format)
    started = time.perf_counter()
    profilers: dict[str, ColumnProfiler] = {}
    baseline = Baseline(options.positive_label) if options.target and options.prediction else None
    rows = 0
    with open_data(path, fmt, skip=options.exclude) as reader:
        header = reader.columns
        if header is not None and (unknown := options.unknown_columns(header)):
            raise OptionError(unknown)  # fail before reading, when the header tells
        for chunk in reader:
            for name, column in chunk.columns.items():
                if (profiler := profilers.get(name)) is None:
                    limit = min(options.exact_limit, max(MIN_EXACT, EXACT_BUDGET // len(chunk.columns)))
                    forced: Kind | None = "categorical" if name in options.categorical else None
                    forced = "numeric" if name in options.numeric else forced
                    profiler = profilers[name] = ColumnProfiler(name, forced=forced, exact_limit=limit, rows=rows)
                profiler.add(column)
            for name, profiler in profilers.items():
                if name not in chunk.columns:
                    profiler.add_nulls(chunk.rows)
            if baseline is not None and options.target in chunk.columns and options.prediction in chunk.columns:
                baseline.add(target=chunk.columns[options.target], prediction=chunk.columns[options.prediction])
            rows += chunk.rows
            if progress is not None:
                progress.update(reader.fraction(), rows=rows)
        columns = reader.columns or ()  # JSON Lines knows its columns now, at the end
    if header is None and (unknown := options.unknown_columns(columns)):
        raise OptionError(unknown)
    if rows == 0:
        raise DataError(f"{path}: no data rows")
    finished = {
        name: p.finish(bins=options.bins, max_categories=options.max_categories) for name, p in profilers.items()
    }
    profile, warnings = _assemble(path, fmt, rows, finished, options, baseline, now or dt.datetime.now(dt.UTC))
    return BuildResult(profile, rows, time.perf_counter() - started, tuple(warnings))


def _assemble(
    path: Path,
    fmt: Format,
    rows: int,
    finished: dict[str, Finished],
    options: BuildOptions,
    baseline: Baseline | None,
    now: dt.datetime,
) -> tuple[ReferenceProfile, list[str]]:
    warnings = [w for f in finished.values() for w in f.warnings]
    roles = set(options.roles.values())
    features = {name: f.distribution for name, f in finished.items() if name not in roles}
    outputs: dict[str, Distribution] = {}
    for role, name in (("prediction", options.prediction), ("confidence", options.confidence)):
        if name is not None and name in finished:
            outputs[role] = finished[name].distribution
    target = finished[options.target].distribution if options.target in finished else None
    metrics: dict[str, float] = {}
    if baseline is not None and target is not None:
        metrics = baseline.metrics("classification" if target.kind == "categorical" else "regression")
        if not metrics:
            warnings.append("no row has both a target and a prediction: the profile has no baseline")
        elif target.kind == "categorical" and baseline.capped:
            warnings.append("too many distinct (target, prediction) pairs: the baseline has accuracy only")
        elif metrics.get("accuracy") == 0.0:
            warnings.append("no prediction equals its target: is --prediction the predicted label, not a score?")
        positive = options.positive_label
        if positive is not None and target.kind == "numeric":
            warnings.append("--positive-label is ignored: the target is numeric (regression)")
        elif positive is not None and positive not in target.categories:
            warnings.append(f"--positive-label {positive!r} is not among the target's categories")
    source: dict[str, object] = {"path": str(path), "format": fmt, "rows": rows, "columns": len(finished)}
    if options.roles:
        # Which data column each output and the target came from, for people reading the profile.
        source["roles"] = {option.removeprefix("--"): name for option, name in options.roles.items()}
    quantile_error = {n: f.quantile_error for n, f in finished.items() if f.quantile_error is not None}
    category_error = {n: f.category_error for n, f in finished.items() if f.category_error is not None}
    if quantile_error:
        source["quantile_rank_error"] = quantile_error
    if category_error:
        source["category_share_error"] = category_error
    content = ReferenceProfile("", "", features, outputs, target, metrics)
    digest = content.to_json()["content_hash"].removeprefix("sha256:")
    profile = ReferenceProfile(
        version=options.version or f"{now.date().isoformat()}.{digest[:8]}",
        created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        features=features,
        outputs=outputs,
        target=target,
        baseline=metrics,
        source=source,
    )
    return profile, warnings


def write_profile(profile: ReferenceProfile, output: Path) -> None:
    """Write the profile atomically: a temporary file beside ``output``, then a rename over it."""
    data = profile.dumps()
    fd, temporary = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            # mkstemp makes the file private; a profile is read by the sidecar, often as another user.
            os.fchmod(file.fileno(), 0o644)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, output)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
