"""Reading deploy/grafana/ml-sidecar.json as the tests need it: its panels, their queries, its variables.

Usage::

    for panel, target in queries(load()):
        print(panel["title"], substitute(target["expr"], {"model": "credit"}))
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["BUILTINS", "DASHBOARD", "load", "panels", "queries", "substitute", "used", "variables"]

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "ml-sidecar.json"

# Grafana's own variables that the panels may use, and a value for each that suits a test whose
# Prometheus scrapes every second: a rate window of several scrapes, and the dashboard's default
# time range (now-3h to now) for the counts over the range.
BUILTINS = {"__rate_interval": "1m", "__range": "3h"}

_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}")

Json = dict[str, Any]


def load() -> Json:
    dashboard: Json = json.loads(DASHBOARD.read_text())
    return dashboard


def panels(dashboard: Json) -> Iterator[Json]:
    """Every panel that is not a row, rows' own nested panels included (a collapsed row holds them)."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(dashboard: Json) -> Iterator[tuple[Json, Json]]:
    """``(panel, target)`` for every query of every panel."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def variables(dashboard: Json) -> dict[str, Json]:
    """The template variables by name."""
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def used(text: str) -> set[str]:
    """The names of the variables ``text`` refers to, as ``$name`` or ``${name}``."""
    return {match.group(1) or match.group(2) for match in _VARIABLE.finditer(text)}


def substitute(text: str, values: Mapping[str, str]) -> str:
    """``text`` with every variable replaced by its value; a variable without one is a KeyError."""
    return _VARIABLE.sub(lambda match: values[match.group(1) or match.group(2)], text)
