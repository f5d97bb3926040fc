"""``ml-sidecar profile build``, ``profile show`` and ``profile check``.

Exit status: 0 on success; 1 when DATA (or the profile to show or check
against) is missing, unreadable or malformed, or the output cannot be
written; 2 for options that cannot be used (argparse's own errors included);
3 from ``check`` when the data has drifted, so that a pipeline can stop on
it: when more than ``--drift-share`` of the judged features drifted, or when
a judged output (prediction, confidence) or the target drifted, unless
``--ignore-output-drift``. ``--verdict``, ``--alpha`` and the thresholds
choose the verdict rule as the ``SIDECAR_DRIFT_*`` settings do for the
sidecar. For ``check``, an option naming a column that neither DATA nor the
profile has, or an output or target the profile does not describe, is a bad
option (2), as an unknown column is for ``build``. A failed build leaves no
output file behind, not even a partial one.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sidecar.profiling.progress import Progress

__all__ = ["add_profile_commands", "cmd_build", "cmd_check", "cmd_show"]

EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_DRIFT = 3
_BUILD = "ml-sidecar profile build"
_CHECK = "ml-sidecar profile check"
T = TypeVar("T")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_profile_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the ``profile`` command group to the top-level subcommands."""
    group = commands.add_parser("profile", help="build or show a reference profile, or check data against one")
    actions = group.add_subparsers(dest="profile_command", required=True, metavar="COMMAND")
    build = actions.add_parser(
        "build",
        help="profile training data (CSV, JSON Lines, Parquet) into reference.json",
        description="Profile a data file, in one streaming pass, into a reference profile.",
    )
    build.add_argument("data", metavar="DATA", type=Path, help="a .csv, .jsonl/.ndjson or .parquet file")
    build.add_argument("--output", "-o", type=Path, required=True, help="where to write the profile (JSON)")
    build.add_argument("--format", choices=("csv", "jsonl", "parquet"), help="override the extension's format")
    build.add_argument("--bins", type=int, default=10, help="quantile bins per numeric column (default 10)")
    build.add_argument("--max-categories", type=int, default=50, help="categories kept per column (default 50)")
    for option, what in (
        ("--categorical", "columns to profile as categorical"),
        ("--numeric", "columns to profile as numeric (text counts as null)"),
        ("--exclude", "columns to leave out"),
    ):
        build.add_argument(option, type=_names, action="extend", default=[], metavar="COL,...", help=what)
    build.add_argument("--prediction", metavar="COL", help="the model's prediction column (outputs.prediction)")
    build.add_argument("--confidence", metavar="COL", help="the model's confidence column (outputs.confidence)")
    build.add_argument("--target", metavar="COL", help="the ground-truth column (target; baseline metrics)")
    build.add_argument("--positive-label", metavar="LABEL", help="binary precision/recall/F1 for this label")
    build.add_argument("--version", dest="profile_version", metavar="VERSION", help="default: DATE.CONTENTHASH")
    build.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    build.set_defaults(func=cmd_build)
    show = actions.add_parser("show", help="print a reference profile as a readable summary")
    show.add_argument("profile", metavar="PROFILE", type=Path)
    show.set_defaults(func=cmd_show)
    check = actions.add_parser(
        "check",
        help="judge a data file's drift against a reference profile, as the sidecar judges live traffic",
        description=(
            "Count a data file (CSV, JSON Lines, Parquet) into the sidecar's drift windows and print PSI, KS or"
            " chi-square (raw and Holm-corrected p), the effect size and the verdict per feature, output and target"
            " against the profile."
        ),
        epilog=(
            "A verdict is drift when the shift is real (Holm-corrected p < --alpha) and material (effect size at"
            " least its threshold), or when PSI > 0.2; --verdict psi judges by PSI alone."
            " The data has drifted when more than --drift-share of the judged features drifted, or when the"
            " prediction, the confidence or the target drifted (unless --ignore-output-drift)."
            " Exit status: 0 no drift; 1 DATA or PROFILE missing, unreadable or malformed; 2 bad options, including"
            " a --prediction/--confidence/--target column that neither DATA nor the profile has, or one the profile"
            " has no reference for; 3 drift."
        ),
    )
    check.add_argument("profile", metavar="PROFILE", type=Path, help="the reference profile (JSON)")
    check.add_argument("data", metavar="DATA", type=Path, help="a .csv, .jsonl/.ndjson or .parquet file")
    check.add_argument("--format", choices=("csv", "jsonl", "parquet"), help="override the extension's format")
    for role in ("prediction", "confidence", "target"):
        check.add_argument(f"--{role}", metavar="COL", help=f"the {role} column (default: the profile's)")
    check.add_argument("--min-samples", type=int, default=200, help="fewest values for a verdict (default 200)")
    check.add_argument(
        "--drift-share", type=float, default=0.5, help="share of drifted features for dataset drift (default 0.5)"
    )
    check.add_argument(
        "--verdict",
        default="combined",
        metavar="RULE",
        help="combined (real and material, or PSI > 0.2; the default) or psi (PSI alone)",
    )
    check.add_argument("--alpha", type=float, default=0.05, help="level of the corrected tests (default 0.05)")
    check.add_argument(
        "--wasserstein-threshold",
        type=float,
        default=0.1,
        metavar="W",
        help="normed Wasserstein distance at which a numeric shift is material (default 0.1)",
    )
    check.add_argument(
        "--jensenshannon-threshold",
        type=float,
        default=0.1,
        metavar="JS",
        help="Jensen-Shannon distance at which a categorical shift is material (default 0.1)",
    )
    check.add_argument(
        "--ignore-output-drift",
        action="store_true",
        help="judge the features alone: drift of the prediction, confidence or target is reported but exits 0",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    check.set_defaults(func=cmd_check)


def cmd_build(args: argparse.Namespace) -> int:
    from sidecar.profiling.builder import BuildOptions, build_profile, write_profile

    output: Path = args.output
    options = BuildOptions(
        format=args.format,
        bins=args.bins,
        max_categories=args.max_categories,
        categorical=frozenset(args.categorical),
        numeric=frozenset(args.numeric),
        exclude=frozenset(args.exclude),
        prediction=args.prediction,
        confidence=args.confidence,
        target=args.target,
        positive_label=args.positive_label,
        version=args.profile_version,
    )
    if not output.parent.is_dir():
        return _fail(f"--output {output}: directory {output.parent} does not exist", EXIT_USAGE)
    progress = _progress(args)
    build = partial(build_profile, args.data, options, progress=progress)
    result, code = _read(build, args.data, progress, _BUILD)
    if result is None:
        return code
    try:
        write_profile(result.profile, output)
    except OSError as exc:
        return _fail(f"cannot write {output}: {exc.strerror or exc}", EXIT_DATA)
    for warning in result.warnings:
        print(f"ml-sidecar profile build: warning: {warning}", file=sys.stderr)
    kinds = result.kinds
    rate = result.rows / result.seconds if result.seconds > 0 else 0.0
    print(
        f"profiled {args.data}: {result.rows:,} rows, {sum(kinds.values())} columns"
        f" ({kinds['numeric']} numeric, {kinds['categorical']} categorical)"
        f" in {result.seconds:.1f} s ({rate:,.0f} rows/s)"
        f" -> {output} (version {result.profile.version})",
        file=sys.stderr,
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from sidecar.profiling.show import render_profile
    from sidecar.reference import ProfileError, load_profile

    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        print(f"ml-sidecar profile show: error: {exc}", file=sys.stderr)
        return EXIT_DATA
    print(render_profile(profile, str(args.profile)))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import orjson

    from sidecar.profiling.check import CheckOptions, check_data, check_json, render_check
    from sidecar.reference import ProfileError, load_profile

    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        return _fail(str(exc), EXIT_DATA, _CHECK)
    options = CheckOptions(
        format=args.format,
        prediction=args.prediction,
        confidence=args.confidence,
        target=args.target,
        min_samples=args.min_samples,
        drift_share=args.drift_share,
        ignore_output_drift=args.ignore_output_drift,
        verdict=args.verdict,
        alpha=args.alpha,
        wasserstein=args.wasserstein_threshold,
        jensenshannon=args.jensenshannon_threshold,
    )
    progress = _progress(args)
    check = partial(check_data, profile, args.data, options, progress=progress)
    result, code = _read(check, args.data, progress, _CHECK)
    if result is None:
        return code
    if args.json:
        sys.stdout.write(orjson.dumps(check_json(result), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render_check(result))
    return EXIT_DRIFT if result.drifted else 0


def _progress(args: argparse.Namespace) -> Progress:
    from sidecar.profiling.progress import Progress

    return Progress(sys.stderr, label=args.data.name, enabled=args.progress or sys.stderr.isatty())


def _read(work: Callable[[], T], data: Path, progress: Progress, command: str) -> tuple[T | None, int]:
    """Run ``work``, which reads DATA, with the collector paused: ``(result, 0)``, or ``(None, exit status)``.

    A failure is reported as the commands report it: every option problem
    (exit 2), unreadable or malformed data (exit 1), an interrupt (130). The
    progress line is wiped either way, before anything else is printed.
    """
    from sidecar.profiling.errors import DataError, OptionError

    try:
        with _gc_paused():
            result = work()
    except OptionError as exc:
        progress.close()
        for problem in exc.problems:
            _fail(problem, EXIT_USAGE, command)
        return None, EXIT_USAGE
    except DataError as exc:
        progress.close()
        return None, _fail(str(exc), EXIT_DATA, command)
    except OSError as exc:  # a disk error in the middle of the file
        progress.close()
        return None, _fail(f"{data}: cannot read: {exc.strerror or exc}", EXIT_DATA, command)
    except KeyboardInterrupt:
        progress.close()
        return None, _fail("interrupted; nothing written" if command == _BUILD else "interrupted", 130, command)
    progress.close()
    return result, 0


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    # Parsing makes millions of short-lived lists and dicts, none in a cycle, and
    # the collector's passes over them cost 5 % (CSV) to 25 % (JSON Lines) of a
    # build. Paused here, in the one-shot command, not in build_profile, which a
    # serving process also calls (sidecar.monitoring.learning).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _fail(message: str, code: int, command: str = _BUILD) -> int:
    print(f"{command}: error: {message}", file=sys.stderr)
    return code
