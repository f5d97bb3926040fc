"""``ml-sidecar profile show``: a reference profile as text a person can read.

Usage::

    print(render_profile(load_profile("reference.json"), "reference.json"))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sidecar.reference import OTHER, Distribution, ReferenceProfile

__all__ = ["render_profile"]

TOP_CATEGORIES = 3
HEADER = ("column", "kind", "bins", "null", "count", "cardinality", "mean", "std", "min", "max", "top categories")
RIGHT = {"bins", "null", "count", "cardinality", "mean", "std", "min", "max"}


def render_profile(profile: ReferenceProfile, path: str) -> str:
    lines = [f"reference profile {path}"]
    facts = [
        ("version", profile.version),
        ("created_at", profile.created_at),
        ("hash", profile.content_hash),
        ("source", _source(profile.source)),
    ]
    roles = profile.source.get("roles")
    if isinstance(roles, Mapping) and roles:
        facts.append(("columns", ", ".join(f"{role}={name}" for role, name in roles.items())))
    errors = profile.source.get("quantile_rank_error")
    if isinstance(errors, Mapping) and errors:
        worst = max(float(v) for v in errors.values())
        columns = f"{len(errors)} column" + ("s" if len(errors) > 1 else "")
        facts.append(("quantiles", f"approximate for {columns} (rank error at most {worst:.3%})"))
    else:
        facts.append(("quantiles", "exact"))
    lines += [f"  {key:<11} {value}" for key, value in facts]
    lines += _section(f"features ({len(profile.features)})", profile.features)
    if profile.outputs:
        lines += _section(f"outputs ({len(profile.outputs)})", profile.outputs)
    if profile.target is not None:
        lines += _section("target", {"target": profile.target})
    if profile.baseline:
        lines += ["", "baseline"]
        lines += [f"  {key:<11} {_number(value)}" for key, value in profile.baseline.items()]
    return "\n".join(lines)


def _source(source: Mapping[str, object]) -> str:
    text = str(source.get("path", "?"))
    if "format" in source:
        text += f" ({source['format']})"
    rows = source.get("rows")
    if isinstance(rows, int):
        text += f", {rows:,} rows"
    return text


def _section(title: str, distributions: Mapping[str, Distribution]) -> list[str]:
    rows = [HEADER] + [_row(name, d) for name, d in distributions.items()]
    return ["", title, *_table(rows)]


def _row(name: str, d: Distribution) -> tuple[str, ...]:
    s = d.stats
    return (
        name,
        d.kind,
        str(d.bins),
        f"{s.null_share:.1%}",
        f"{s.count:,}",
        f"{s.cardinality:,}",
        _number(s.mean),
        _number(s.std),
        _number(s.min),
        _number(s.max),
        _top(d) if d.kind == "categorical" else "",
    )


def _top(d: Distribution) -> str:
    shown = [f"{category} {ratio:.1%}" for category, ratio in zip(d.categories, d.ratios, strict=False)]
    text = ", ".join(shown[:TOP_CATEGORIES])
    if len(shown) > TOP_CATEGORIES:
        text += f", … ({len(shown) - TOP_CATEGORIES} more)"
    return f"{text}; {OTHER} {d.ratios[-1]:.1%}" if text else f"{OTHER} {d.ratios[-1]:.1%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    out = []
    for row in rows:
        cells = [
            cell.rjust(width) if HEADER[i] in RIGHT else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  " + "  ".join(cells).rstrip())
    return out
