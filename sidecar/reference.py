"""The reference profile: what the model's inputs and outputs looked like in training.

A profile is JSON, versioned, with a content hash. It fixes, once, the bins
that every replica counts live traffic into, so per-bin counters add up
across replicas and Prometheus can compute fleet-wide PSI from them.

Bins:

- **numeric**: ``edges`` are the k-1 inner cut points, taken from reference
  quantiles and strictly increasing. Bin 0 is ``(-inf, edges[0]]``, bin i is
  ``(edges[i-1], edges[i]]``, the last bin is ``(edges[-1], +inf)``: the first
  and last bins are open-ended, so no live value falls outside the bins. A
  value goes to the first bin whose upper edge is ``>=`` it (Prometheus' ``le``).
- **categorical**: one bin per reference category, in the profile's order,
  then one more, :data:`OTHER`, for every value the reference did not have.

Nulls (JSON null, NaN) fall in no bin; they count toward ``null_share``.
The ``bin`` label of the metrics is the bin's index for numeric features and
the category itself for categorical ones.

Format (``format_version`` 1)::

    {"format": "ml-sidecar/reference-profile", "format_version": 1,
     "version": "2026-11-26.a1b2c3d4", "created_at": "2026-11-26T08:00:00Z",
     "source": {"path": "train.csv", "rows": 100000},
     "features": {"age": {"kind": "numeric", "edges": [...], "ratios": [...], "stats": {...}}, ...},
     "outputs": {"prediction": {...}, "confidence": {...}},
     "target": {...} | null,
     "baseline": {"accuracy": 0.91, ...},
     "content_hash": "sha256:..."}

``stats`` holds count, mean, std, min, max, null_share and cardinality (the
distinct non-null values, capped at :data:`CARDINALITY_CAP`).
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from sidecar.exceptions import SidecarError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "OTHER",
    "CARDINALITY_CAP",
    "Kind",
    "Stats",
    "Distribution",
    "ReferenceProfile",
    "ProfileError",
    "load_profile",
    "category_key",
]

FORMAT = "ml-sidecar/reference-profile"
FORMAT_VERSION = 1
OTHER = "__other__"
CARDINALITY_CAP = 10_000

Kind = Literal["numeric", "categorical"]


class ProfileError(SidecarError):
    """A reference profile that is missing, corrupt, or does not fit the model."""


@dataclass(frozen=True)
class Stats:
    count: int  # non-null values
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    null_share: float = 0.0
    cardinality: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "null_share": self.null_share,
            "cardinality": self.cardinality,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Stats:
        return cls(
            count=int(data["count"]),
            mean=_opt_float(data.get("mean")),
            std=_opt_float(data.get("std")),
            min=_opt_float(data.get("min")),
            max=_opt_float(data.get("max")),
            null_share=float(data.get("null_share", 0.0)),
            cardinality=int(data.get("cardinality", 0)),
        )


@dataclass(frozen=True)
class Distribution:
    """The reference distribution of one feature or output over fixed bins.

    Usage::

        age = Distribution.numeric(edges=(30.0, 45.0), ratios=(0.3, 0.4, 0.3), stats=Stats(count=1000))
        age.bin_of(40)  # 1
        age.labels      # ("0", "1", "2")
    """

    kind: Kind
    ratios: tuple[float, ...]
    stats: Stats
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        expected = len(self.edges) + 1 if self.kind == "numeric" else len(self.categories) + 1
        if len(self.ratios) != expected:
            raise ValueError(f"{self.kind} distribution needs {expected} ratios, has {len(self.ratios)}")
        if self.kind == "numeric" and any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("numeric edges must be strictly increasing")
        if self.kind == "categorical":
            if len(set(self.categories)) != len(self.categories) or OTHER in self.categories:
                raise ValueError(f"categories must be distinct and must not include {OTHER!r}")
            self._index.update((c, i) for i, c in enumerate(self.categories))

    @classmethod
    def numeric(cls, *, edges: Sequence[float], ratios: Sequence[float], stats: Stats) -> Distribution:
        return cls("numeric", tuple(map(float, ratios)), stats, edges=tuple(map(float, edges)))

    @classmethod
    def categorical(cls, *, categories: Sequence[str], ratios: Sequence[float], stats: Stats) -> Distribution:
        return cls("categorical", tuple(map(float, ratios)), stats, categories=tuple(categories))

    @property
    def bins(self) -> int:
        return len(self.ratios)

    @property
    def labels(self) -> tuple[str, ...]:
        """The ``bin`` label values, bounded by the profile, never by traffic."""
        if self.kind == "numeric":
            return tuple(str(i) for i in range(self.bins))
        return (*self.categories, OTHER)

    def bin_of(self, value: Any) -> int | None:
        """The bin of one live value, or None for a null. Pure Python: this runs per record."""
        if value is None:
            return None
        if self.kind == "numeric":
            if isinstance(value, bool) or not isinstance(value, int | float):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    return None  # a type error is a quality finding, not a bin
            if value != value:  # NaN
                return None
            return bisect_left(self.edges, value)
        key = value if isinstance(value, str) else category_key(value)
        return self._index.get(key, len(self.categories))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "numeric":
            out["edges"] = list(self.edges)
        else:
            out["categories"] = list(self.categories)
        out["ratios"] = list(self.ratios)
        out["stats"] = self.stats.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Distribution:
        kind = data["kind"]
        stats = Stats.from_json(data["stats"])
        if kind == "numeric":
            return cls.numeric(edges=data["edges"], ratios=data["ratios"], stats=stats)
        if kind == "categorical":
            return cls.categorical(categories=[str(c) for c in data["categories"]], ratios=data["ratios"], stats=stats)
        raise ValueError(f"unknown kind {kind!r}; expected numeric or categorical")


def category_key(value: Any) -> str:
    """How a non-string value is named as a category: JSON text, so 1 and "1" differ only by quotes."""
    if isinstance(value, float) and value.is_integer():
        # 1.0 from one client and 1 from another are the same category.
        value = int(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        # orjson refuses integers beyond 64 bits; their decimal text is their JSON.
        return str(value)


@dataclass(frozen=True)
class ReferenceProfile:
    version: str
    created_at: str
    features: Mapping[str, Distribution]
    outputs: Mapping[str, Distribution] = field(default_factory=dict)
    target: Distribution | None = None
    baseline: Mapping[str, float] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)
    content_hash: str = ""

    def to_json(self) -> dict[str, Any]:
        body = self._body()
        body["content_hash"] = _hash(body)
        return body

    def _body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "created_at": self.created_at,
            "source": dict(self.source),
            "features": {name: d.to_json() for name, d in self.features.items()},
            "outputs": {name: d.to_json() for name, d in self.outputs.items()},
            "target": None if self.target is None else self.target.to_json(),
            "baseline": dict(self.baseline),
        }

    def dumps(self) -> bytes:
        return orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        if data.get("format") != FORMAT:
            raise ProfileError(f"not a reference profile: 'format' is {data.get('format')!r}, expected {FORMAT!r}")
        if data.get("format_version") != FORMAT_VERSION:
            raise ProfileError(
                f"profile format_version {data.get('format_version')!r} is not supported (expected {FORMAT_VERSION})"
            )
        try:
            profile = cls(
                version=str(data["version"]),
                created_at=str(data["created_at"]),
                features={str(k): Distribution.from_json(v) for k, v in data["features"].items()},
                outputs={str(k): Distribution.from_json(v) for k, v in (data.get("outputs") or {}).items()},
                target=None if data.get("target") is None else Distribution.from_json(data["target"]),
                baseline={str(k): float(v) for k, v in (data.get("baseline") or {}).items()},
                source=dict(data.get("source") or {}),
                content_hash=str(data.get("content_hash", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProfileError(f"corrupt reference profile: {type(exc).__name__}: {exc}") from exc
        expected = _hash(profile._body())
        if profile.content_hash != expected:
            raise ProfileError(
                f"reference profile content hash mismatch: file says {profile.content_hash!r}, content is {expected!r}"
                " (edited by hand or truncated?)"
            )
        return profile


def load_profile(path: str | Path) -> ReferenceProfile:
    """Read and verify a profile file; every failure is a :class:`ProfileError` naming the path."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ProfileError(f"cannot read reference profile {path}: {exc.strerror}") from exc
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProfileError(f"reference profile {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"reference profile {path} is not a JSON object")
    try:
        return ReferenceProfile.from_json(data)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from exc


def _hash(body: Mapping[str, Any]) -> str:
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
