"""Pin the alerting package's public API, and keep its core free of web imports."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import sidecar.alerting

PACKAGE = Path(sidecar.alerting.__file__).parent
# docs/architecture.md, "Statistics know no web": only notify.py may speak HTTP.
CORE = ("signals", "conditions", "evaluation", "rules", "engine", "metrics")
WEB = (
    "aiohttp",
    "httpx",
    "starlette",
    "uvicorn",
    "sidecar.upstream",
    "sidecar.serving",
    "sidecar.admin",
)


def test_the_package_exports_names_of_its_modules_each_once() -> None:
    # The package is a facade: every name it lists comes from one of its modules, listed once.
    offered = {name for module in CORE for name in importlib.import_module(f"sidecar.alerting.{module}").__all__}
    exported = set(sidecar.alerting.__all__)
    assert exported == {name for name in offered if name in exported} and len(exported) == len(sidecar.alerting.__all__)
    for name in sidecar.alerting.__all__:
        assert getattr(sidecar.alerting, name) is not None


@pytest.mark.parametrize("module", [*CORE, "notify"])
def test_every_module_lists_names_it_has(module: str) -> None:
    loaded = importlib.import_module(f"sidecar.alerting.{module}")
    assert all(hasattr(loaded, name) for name in loaded.__all__)


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_no_web_module(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    assert [name for name in imported if name.startswith(WEB)] == []


def test_signals_import_nothing_from_the_sidecar() -> None:
    # The wiring builds Signals from every monitor: it must not depend on any of them.
    tree = ast.parse((PACKAGE / "signals.py").read_text())
    modules = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    modules += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert [m for m in modules if m and m.startswith("sidecar")] == []
