"""Per-feature quality rules: the optional YAML file named by ``SIDECAR_QUALITY_RULES``.

Format::

    # Checks off for every feature: any name from CHECKS (volume ones included).
    disable: [unexpected]
    features:
      age: {min: 0, max: 120, nullable: false}
      country: {allowed: [DE, FR, US]}
      income: {non_negative: true, disable: [out_of_range]}

Both top-level keys are optional; no other key is allowed. A rule's keys, all optional:

==============  =====================================================================
``min, max``    numbers: the allowed range, exact (no tolerance). Each replaces the
                reference's bound on its side only. ``min <= max``.
``allowed``     a non-empty list of strings or numbers: the allowed categories,
                replacing the reference's. Numbers match as :func:`category_key`
                names them, so ``1`` matches a live ``1``, ``1.0`` or ``"1"``.
``nullable``    true/false: whether null is allowed, replacing the reference's
                "nullable when it had nulls" (``null_share > 0``).
``non_negative`` true/false: whether negatives are violations, replacing the
                reference's "non-negative when its min >= 0".
``disable``     a list of checks off for this feature, from :data:`FEATURE_CHECKS`.
==============  =====================================================================

A rule's keys fix the feature's kind: ``min``, ``max`` and ``non_negative``
make it numeric, ``allowed`` categorical, and a rule cannot have both. Where the
reference says the other kind, the rule wins and the reference's expectations
of that feature are dropped (:meth:`QualityRules.conflicts` lists these cases,
for a start-up warning). A rule may name a feature the reference lacks: the
feature is then expected too (``missing`` fires without it) and checked for
exactly what the rule states; ``nullable`` defaults to true there, since
nothing says otherwise. Rules apply while no profile is loaded yet, too.

Loading is strict: unknown keys, wrong types, duplicate keys and YAML booleans
in ``allowed`` (unquoted ``NO``, ``yes``, ``off``...) are errors. Every problem
in the file is reported at once in one :class:`QualityRulesError`, one line
each, naming the file, the feature, the key and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sidecar.exceptions import ProblemsError
from sidecar.quality.checks import CHECKS, FEATURE_CHECKS, Expectation, reference_expectation
from sidecar.reference import Kind, ReferenceProfile, category_key
from sidecar.yamlfile import StrictLoader, read_yaml

__all__ = ["QualityRulesError", "FeatureRule", "QualityRules", "load_rules"]

TOP_KEYS: Final = ("features", "disable")
RULE_KEYS: Final = ("min", "max", "allowed", "nullable", "non_negative", "disable")
_NUMERIC_KEYS: Final = ("min", "max", "non_negative")
_SHOWN: Final = 60  # characters of a bad value quoted in a message


class QualityRulesError(ProblemsError):
    """A quality rules file that cannot be used. ``problems`` has one line per problem."""


@dataclass(frozen=True)
class FeatureRule:
    """The overrides for one feature; None means "as the reference says".

    Usage::

        FeatureRule(min=0.0, max=120.0, nullable=False).kind  # "numeric"
    """

    min: float | None = None
    max: float | None = None
    allowed: frozenset[str] | None = None  # category keys
    nullable: bool | None = None
    non_negative: bool | None = None
    disable: frozenset[str] = frozenset()

    @property
    def kind(self) -> Kind | None:
        if self.allowed is not None:
            return "categorical"
        if self.min is not None or self.max is not None or self.non_negative is not None:
            return "numeric"
        return None


@dataclass(frozen=True)
class QualityRules:
    """Parsed quality rules.

    Usage::

        rules = load_rules("/etc/sidecar/quality.yaml")
        rules = QualityRules.from_mapping({"features": {"age": {"max": 120}}}, source="inline")
        rules.features["age"].max  # 120.0
    """

    features: Mapping[str, FeatureRule] = field(default_factory=dict)
    disable: frozenset[str] = frozenset()
    source: str = "<rules>"

    @classmethod
    def from_mapping(cls, data: object, *, source: str = "<rules>") -> QualityRules:
        """Validate parsed YAML; raise :class:`QualityRulesError` listing every problem."""
        problems: list[str] = []
        if not isinstance(data, dict):
            raise QualityRulesError(
                [f"{source}: expected a mapping with the keys features and disable, found {_what(data)}"]
            )
        problems += [
            f"{source}: unknown key {_show(k)}; expected one of: {', '.join(TOP_KEYS)}"
            for k in data
            if k not in TOP_KEYS
        ]
        disable = _check_names(data.get("disable", []), CHECKS, f"{source}: 'disable'", problems)
        features: dict[str, FeatureRule] = {}
        raw_features = data.get("features", {})
        if not isinstance(raw_features, dict):
            problems.append(
                f"{source}: 'features' must be a mapping of feature name to rule, found {_what(raw_features)}"
            )
            raw_features = {}
        for name, raw in raw_features.items():
            if not isinstance(name, str):
                problems.append(f"{source}: feature name {_show(name)} is not a string; quote it")
                continue
            rule = _parse_rule(raw, f"{source}: feature {name!r}", problems)
            if rule is not None:
                features[name] = rule
        if problems:
            raise QualityRulesError(problems)
        return cls(features=features, disable=disable, source=source)

    def conflicts(self, profile: ReferenceProfile) -> list[str]:
        """Rules whose kind differs from the reference's; the rule wins, so these are warnings."""
        out = []
        for name, rule in self.features.items():
            dist = profile.features.get(name)
            if dist is not None and rule.kind is not None and rule.kind != dist.kind:
                out.append(
                    f"{self.source}: feature {name!r}: the rule makes it {rule.kind} but reference profile "
                    f"{profile.version} says {dist.kind}; the rule wins"
                )
        return out

    def expectations(self, profile: ReferenceProfile | None, tolerance: float) -> list[Expectation]:
        """Every expected feature, the reference's first in its order, then rule-only ones."""
        names = list(profile.features) if profile is not None else []
        names += [name for name in self.features if name not in names]
        return [self._expectation(name, profile, tolerance) for name in names]

    def _expectation(self, name: str, profile: ReferenceProfile | None, tolerance: float) -> Expectation:
        rule = self.features.get(name, FeatureRule())
        if profile is not None and name in profile.features:
            base = reference_expectation(name, profile, tolerance)
            if rule.kind is not None and rule.kind != base.kind:
                base = Expectation(name, rule.kind, True, True, base.null)
        else:
            base = Expectation(name, rule.kind, True, rule.kind is not None, False)
        off = self.disable | rule.disable
        low = base.low if rule.min is None else rule.min
        high = base.high if rule.max is None else rule.max
        if "out_of_range" in off:
            low, high = -math.inf, math.inf
        non_negative = base.non_negative if rule.non_negative is None else rule.non_negative
        allowed = base.allowed if rule.allowed is None else rule.allowed
        return Expectation(
            name,
            base.kind,
            missing=base.missing and "missing" not in off,
            type=base.type and "type" not in off,
            null=(base.null if rule.nullable is None else not rule.nullable) and "null" not in off,
            low=low,
            high=high,
            non_negative=non_negative and "negative" not in off,
            allowed=None if "unseen_category" in off else allowed,
        )


def load_rules(path: str | Path) -> QualityRules:
    """Read and validate a rules file; every failure is a :class:`QualityRulesError` naming the path."""
    try:
        data = read_yaml(path, "quality rules", StrictLoader)
    except ValueError as exc:
        raise QualityRulesError([str(exc)]) from exc
    return QualityRules.from_mapping(data, source=str(path))


def _parse_rule(raw: object, where: str, problems: list[str]) -> FeatureRule | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: the rule must be a mapping, e.g. {{min: 0, max: 120}}, found {_what(raw)}")
        return None
    before = len(problems)
    problems += [
        f"{where}: unknown key {_show(k)}; expected one of: {', '.join(RULE_KEYS)}" for k in raw if k not in RULE_KEYS
    ]
    low = _number(raw, "min", where, problems)
    high = _number(raw, "max", where, problems)
    nullable = _flag(raw, "nullable", where, problems)
    non_negative = _flag(raw, "non_negative", where, problems)
    allowed = _categories(raw, where, problems)
    disable = _check_names(raw.get("disable", []), FEATURE_CHECKS, f"{where}: 'disable'", problems)
    if low is not None and high is not None and low > high:
        problems.append(f"{where}: 'min' ({low:g}) is greater than 'max' ({high:g}); expected min <= max")
    if non_negative and low is not None and low < 0:
        problems.append(f"{where}: 'non_negative' is true but 'min' is {low:g}; expected min >= 0")
    if "allowed" in raw and any(k in raw for k in _NUMERIC_KEYS):
        problems.append(
            f"{where}: 'allowed' is for categorical features and 'min', 'max', 'non_negative' for numeric ones;"
            " a rule cannot have both"
        )
    if len(problems) > before:
        return None
    return FeatureRule(
        min=low, max=high, allowed=allowed, nullable=nullable, non_negative=non_negative, disable=disable
    )


def _number(raw: dict[Any, Any], key: str, where: str, problems: list[str]) -> float | None:
    if key not in raw:
        return None
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append(f"{where}: {key!r} is {_show(value)}; expected a finite number")
        return None
    return float(value)


def _flag(raw: dict[Any, Any], key: str, where: str, problems: list[str]) -> bool | None:
    if key not in raw:
        return None
    value = raw[key]
    if not isinstance(value, bool):
        problems.append(f"{where}: {key!r} is {_show(value)}; expected true or false")
        return None
    return value


def _categories(raw: dict[Any, Any], where: str, problems: list[str]) -> frozenset[str] | None:
    if "allowed" not in raw:
        return None
    value = raw["allowed"]
    if not isinstance(value, list) or not value:
        problems.append(f"{where}: 'allowed' is {_show(value)}; expected a non-empty list of strings or numbers")
        return None
    keys: set[str] = set()
    for item in value:
        if isinstance(item, bool):
            # YAML 1.1 reads unquoted yes/no/on/off/true/false as booleans: the Norway problem.
            problems.append(f"{where}: 'allowed' has the YAML boolean {_show(item)}; quote it, e.g. 'NO' or 'yes'")
        elif isinstance(item, str):
            keys.add(item)
        elif isinstance(item, int | float) and math.isfinite(item):
            keys.add(category_key(item))
        else:
            problems.append(f"{where}: 'allowed' has {_show(item)}; expected strings or numbers")
    return frozenset(keys)


def _check_names(value: object, allowed: tuple[str, ...], where: str, problems: list[str]) -> frozenset[str]:
    if not isinstance(value, list):
        problems.append(f"{where} is {_show(value)}; expected a list of checks from: {', '.join(allowed)}")
        return frozenset()
    bad = [item for item in value if item not in allowed]
    problems += [f"{where} has {_show(item)}; expected checks from: {', '.join(allowed)}" for item in bad]
    return frozenset(item for item in value if item in allowed)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _what(value: object) -> str:
    if value is None:
        return "nothing"
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)
