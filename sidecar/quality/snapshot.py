"""The immutable facts the quality monitor hands to the evaluator, the API and the metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

import orjson

from sidecar.quality.checks import Check
from sidecar.quality.volume import SliceTally, VolumeState

__all__ = [
    "keep",
    "MAX_VALUE_CHARS",
    "MAX_NAME_CHARS",
    "MAX_ID_CHARS",
    "Example",
    "Freshness",
    "RecentQuality",
    "QualitySnapshot",
]

# Bounds on what one example may hold, so a flood of huge payloads cannot grow the API's answer.
MAX_VALUE_CHARS: Final = 80
MAX_NAME_CHARS: Final = 64
MAX_ID_CHARS: Final = 128
_ELLIPSIS: Final = "…"


@dataclass(frozen=True, slots=True)
class Example:
    """One recent violation, for ``/api/v1/quality``.

    ``feature`` is the feature's name as the record had it: for ``unexpected``,
    the unexpected name itself (here, and only here: its counter's label is
    ``__unexpected__``). ``value`` is the value as JSON text, cut to
    :data:`MAX_VALUE_CHARS` with a trailing "…"; None for ``missing``.

    Usage::

        Example.of(1764144638.1, "req-1", "age", "type", {"years": 40}).value  # '{"years":40}'
    """

    timestamp: float
    request_id: str
    feature: str
    check: Check
    value: str | None

    @classmethod
    def of(cls, timestamp: float, request_id: str, feature: str, check: Check, value: Any) -> Example:
        """An example from a raw value, or from what :func:`keep` kept of it."""
        text: str | None
        if check == "missing":
            text = None
        elif type(value) is _Text:
            text = value
        else:
            text = _json_text(value)
        return cls(timestamp, _cut(request_id, MAX_ID_CHARS), _cut(feature, MAX_NAME_CHARS), check, text)


class _Text(str):
    """A value already written as an example's text."""


def keep(value: Any) -> Any:
    """What the monitor holds of a violating value until a snapshot formats it.

    Formatting every violation would cost more than finding it, and most are
    pushed out of the bounded list unseen, so formatting waits for the
    snapshot. Scalars are kept as they are and strings cut, but an object or a
    list is written out now: the list must never pin a large payload in memory.
    """
    if type(value) is str:
        return value[: MAX_VALUE_CHARS + 1]
    if isinstance(value, dict | list):
        return _Text(_json_text(value))
    return value


@dataclass(frozen=True, slots=True)
class Freshness:
    """How long since the newest captured record and the newest label; None before the first.

    Ages are clamped at 0, since record timestamps come from the request path's
    clock and labels from clients', which can run ahead of ``now``.
    """

    last_request: float | None  # Unix seconds
    last_label: float | None
    request_age_seconds: float | None
    label_age_seconds: float | None

    @classmethod
    def at(cls, now: float, last_request: float | None, last_label: float | None) -> Freshness:
        return cls(last_request, last_label, _age(now, last_request), _age(now, last_label))


@dataclass(frozen=True, slots=True)
class RecentQuality:
    """Quality over the last closed slice: the "major data-quality problem" signal.

    ``bad_record_share`` is the share of records with at least one violation
    (0 to 1), ``violations_per_record`` the mean number of violations a record
    had; both None when the slice had no record. Volume checks are not in them.
    """

    slice_start: float | None
    records: int
    bad_records: int
    violations: int
    bad_record_share: float | None
    violations_per_record: float | None

    @classmethod
    def of(cls, tally: SliceTally | None) -> RecentQuality:
        if tally is None:
            return cls(None, 0, 0, 0, None, None)
        n = tally.records
        return cls(
            tally.start,
            n,
            tally.bad_records,
            tally.violations,
            tally.bad_records / n if n else None,
            tally.violations / n if n else None,
        )


@dataclass(frozen=True, slots=True)
class QualitySnapshot:
    """Everything the quality monitor knows at ``taken_at``; never changes once made.

    ``violations`` holds every (feature, check) counter, zeros included: the
    label set of ``mlsidecar_data_quality_violations_total``. ``examples`` are
    the most recent first.

    Usage::

        snap = monitor.snapshot()
        snap.violations[("age", "out_of_range")]  # 3
        snap.volume.verdict                       # "ok"
        snap.recent.bad_record_share              # 0.02
        snap.to_json()                            # the body of /api/v1/quality
    """

    taken_at: float
    profile_version: str | None
    records_total: int
    violations: Mapping[tuple[str, str], int]
    examples: tuple[Example, ...]
    volume: VolumeState
    recent: RecentQuality
    freshness: Freshness

    def to_json(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "profile_version": self.profile_version,
            "records_total": self.records_total,
            "violations": [{"feature": f, "check": c, "count": n} for (f, c), n in self.violations.items()],
            "examples": [asdict(example) for example in self.examples],
            "volume": asdict(self.volume),
            "recent": asdict(self.recent),
            "freshness": asdict(self.freshness),
        }


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        # Cut before encoding, so a megabyte string costs no more than a short one.
        value = value[: MAX_VALUE_CHARS + 1]
    elif isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # orjson would write NaN and infinities as null
    try:
        text = orjson.dumps(value, default=repr).decode()
    except TypeError:  # e.g. a dict with non-string keys
        text = repr(value)
    return _cut(text, MAX_VALUE_CHARS)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + _ELLIPSIS


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else max(0.0, now - then)
