"""Durations as people write them: ``90`` (seconds), ``30s``, ``5m``, ``1h30m``, ``7d``, ``2w``.

One parser for the settings (``SIDECAR_RETRAIN_INTERVAL``,
``SIDECAR_ALERT_BASELINE_WINDOW``) and the alert rules' ``for``, so the same
text means the same time everywhere. The units are Prometheus' (without
``ms`` and ``y``, which no setting here needs).
"""

from __future__ import annotations

import math
import re
from typing import Final

__all__ = ["parse_duration"]

_DURATION: Final = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}


def parse_duration(value: object) -> float:
    """Seconds from a number (or its text) or a duration such as ``30s``, ``1h30m``, ``7d``; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    text = value.strip() if isinstance(value, str) else None
    if isinstance(value, int | float):
        seconds = float(value)
    elif text is not None and _DURATION.fullmatch(text):
        seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    else:
        try:
            seconds = float(text) if text else math.nan
        except ValueError:
            seconds = math.nan
        if math.isnan(seconds):
            raise ValueError(f"{value!r} is not a duration; expected seconds or e.g. 30s, 5m, 1h30m, 7d, 2w")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a duration of zero seconds or more")
    return seconds
