"""The sidecar's settings in the demo: the demo's own defaults, under whatever ``SIDECAR_*`` the user set.

The defaults make the demo tell its story in about a minute: a 30-second drift
window in 5-second slices, evaluated every 5 seconds, and the experiment
analysed every 5 seconds (the sidecar's defaults, an hour, a minute, 15 s and
a minute, suit production, not a demo), the reference profile of the
training data, the demo's alert rules and experiment, and the prediction log
in a file rather than on the terminal. A ``SIDECAR_*`` variable set (and not
empty) in the user's environment wins over the default, except
``SIDECAR_UPSTREAM_URL``: the demo proxies its own model server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sidecar.durations import parse_duration

__all__ = ["DEMO_RULES", "Timings", "alert_rules", "sidecar_environment"]

PREFIX = "SIDECAR_"
UPSTREAM = "SIDECAR_UPSTREAM_URL"
DEMO_RULES = Path(__file__).with_name("alert_rules.yml")


@dataclass(frozen=True)
class Timings:
    """The demo's windows at ``speed`` (``DEMO_SPEED``): every length divided by it, within the settings' bounds.

    Usage::

        Timings(speed=5.0).environment()["SIDECAR_DRIFT_WINDOW_SECONDS"]  # "6"
    """

    speed: float = 1.0

    @property
    def window(self) -> float:
        return max(30.0 / self.speed, self.slice)

    @property
    def slice(self) -> float:
        # SIDECAR_DRIFT_SLICE_SECONDS takes 1 s at least.
        return max(5.0 / self.speed, 1.0)

    @property
    def evaluation(self) -> float:
        return max(5.0 / self.speed, 0.1)

    @property
    def experiment(self) -> float:
        # SIDECAR_EXPERIMENT_INTERVAL_SECONDS takes 1 s at least.
        return max(5.0 / self.speed, 1.0)

    @property
    def summary(self) -> float:
        """Seconds between two summary lines on the terminal."""
        return max(5.0 / self.speed, 1.0)

    def environment(self) -> dict[str, str]:
        return {
            "SIDECAR_DRIFT_WINDOW_SECONDS": f"{self.window:g}",
            "SIDECAR_DRIFT_SLICE_SECONDS": f"{self.slice:g}",
            "SIDECAR_EVAL_INTERVAL_SECONDS": f"{self.evaluation:g}",
            "SIDECAR_EXPERIMENT_INTERVAL_SECONDS": f"{self.experiment:g}",
            # 100 rows come in under two seconds; the sidecar's 200 would only delay the first verdict.
            "SIDECAR_DRIFT_MIN_SAMPLES": "100",
        }


def sidecar_environment(
    defaults: Mapping[str, str], user: Mapping[str, str], upstream_url: str
) -> tuple[dict[str, str], list[str]]:
    """The environment to build ``Settings`` from, and notes for the terminal about the user's variables.

    Usage::

        env, notes = sidecar_environment({"SIDECAR_LOG_SINK": "none"}, os.environ, "http://127.0.0.1:8080")
        settings = Settings.from_env(env)
    """
    # Empty counts as unset, as it does for the sidecar itself.
    own = {name: value for name, value in user.items() if name.startswith(PREFIX) and value.strip()}
    notes = []
    if UPSTREAM in own:
        notes.append(f"{UPSTREAM} from your environment is ignored: the demo proxies its own model server")
        del own[UPSTREAM]
    if overridden := sorted(name for name in own if name in defaults):
        notes.append("your environment sets " + ", ".join(overridden) + ", over the demo's defaults")
    return {**defaults, **own, UPSTREAM: upstream_url}, notes


def alert_rules(speed: float, directory: Path) -> Path:
    """The demo's rules file; at a speed other than 1, a copy in ``directory`` with every ``for`` divided by it."""
    if speed == 1.0:
        return DEMO_RULES
    document: dict[str, Any] = yaml.safe_load(DEMO_RULES.read_text(encoding="utf-8"))
    for rule in document["alerts"]:
        if "for" in rule:
            rule["for"] = parse_duration(rule["for"]) / speed
    scaled = directory / DEMO_RULES.name
    scaled.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return scaled
