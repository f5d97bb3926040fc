"""Pin the public API, as httpx's tests/test_exported_members.py does."""

from __future__ import annotations

import importlib
import re

import sidecar
import sidecar.exceptions


def test_all_exports_exist_and_are_listed() -> None:
    assert sidecar.__all__ == [
        "__version__",
        "ConfigError",
        "ProblemsError",
        "Settings",
        "SidecarError",
        "UpstreamConnectError",
        "UpstreamError",
        "UpstreamProtocolError",
        "UpstreamTimeout",
    ]
    for name in sidecar.__all__:
        assert getattr(sidecar, name) is not None


# A line of the drawing: the trunk of the levels above, a branch, the class, and its module if elsewhere.
_LINE = re.compile(
    r"    (?P<trunk>(?:[│ ]   )*)(?P<branch>[├└]── )?(?P<name>\w+)"
    r".*?(?:\((?P<module>sidecar[\w.]*)\))?"
)


def _drawn_hierarchy() -> list[tuple[str, str | None, str]]:
    """(class, drawn parent, module) for each line of the tree in the exceptions docstring."""
    doc = sidecar.exceptions.__doc__ or ""
    drawing = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    parents: list[str] = []
    drawn: list[tuple[str, str | None, str]] = []
    for line in drawing.splitlines():
        match = _LINE.fullmatch(line)
        assert match, line
        depth = len(match["trunk"]) // 4 + (1 if match["branch"] else 0)
        del parents[depth:]
        drawn.append((match["name"], parents[-1] if parents else None, match["module"] or "sidecar.exceptions"))
        parents.append(match["name"])
    return drawn


def test_the_drawn_exception_hierarchy_is_the_real_one() -> None:
    drawn = _drawn_hierarchy()
    assert drawn[0] == ("SidecarError", None, "sidecar.exceptions")
    classes = {name: getattr(importlib.import_module(module), name) for name, _, module in drawn}
    for name, parent, _ in drawn[1:]:
        assert parent is not None
        assert classes[parent] in classes[name].__bases__, (name, parent)
    problems = {name for name, cls in classes.items() if issubclass(cls, sidecar.ProblemsError)}
    assert problems == {
        "ProblemsError",
        "ConfigError",
        "AlertRulesError",
        "QualityRulesError",
        "ExperimentError",
        "OptionError",
    }


def test_a_problems_error_keeps_every_problem_and_shows_one_per_line() -> None:
    error = sidecar.ConfigError(["SIDECAR_LISTEN_PORT='x' is not valid", "SIDECAR_UPSTREAM_URL is required"])
    assert isinstance(error, sidecar.ProblemsError) and isinstance(error, sidecar.SidecarError)
    assert error.problems == ["SIDECAR_LISTEN_PORT='x' is not valid", "SIDECAR_UPSTREAM_URL is required"]
    assert str(error) == "SIDECAR_LISTEN_PORT='x' is not valid\nSIDECAR_UPSTREAM_URL is required"
