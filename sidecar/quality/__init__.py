"""Data quality: schema and value checks per record, volume per time slice, freshness.

Every violation counts once per record and feature in
``mlsidecar_data_quality_violations_total{model,feature,check}``. Counts are
of records, not weights: a malformed row is one malformed row, whatever the
probability it was sampled with. (Volume, by contrast, is weighted: see
:mod:`.volume`.)

The checks (``CHECKS``), with the ``feature`` label they count under:

===================  ===============  ==================================================================
check                feature label    fires when
===================  ===============  ==================================================================
``missing``          the feature      an expected feature is absent from the record (a key present with
                                      null is ``null``, not ``missing``)
``type``             the feature      numeric got a non-numeric string, an object or a list; categorical
                                      got an object or a list (numbers, bools and numeric strings are
                                      numbers; numbers and bools are categories)
``null``             the feature      null or NaN, and the feature is not nullable: the reference had no
                                      nulls (``null_share == 0``), or a rule says ``nullable: false``
``out_of_range``     the feature      a number outside ``[min − t·(max − min), max + t·(max − min)]`` of
                                      the reference, t the range tolerance; or outside a rule's exact
                                      ``min``/``max``
``unseen_category``  the feature      a category not in the reference's ``categories`` (or a rule's
                                      ``allowed``). A reference that folded its long tail into ``OTHER``
                                      lists only its head, so values from that tail count as unseen
``negative``         the feature      a number < 0 where the reference's min was >= 0 (or a rule says
                                      ``non_negative: true``)
``unexpected``       ``__unexpected__``  a feature the profile does not have (only once a profile is set);
                                      the name itself goes only to the bounded examples
``volume_low``       ``__all__``      a closed slice's volume < 50% of the expected
``volume_high``      ``__all__``      a closed slice's volume > 200% of the expected
``missing_period``   ``__all__``      a closed slice had no record
===================  ===============  ==================================================================

A number can be both ``out_of_range`` and ``negative``; each counts. The label
set is fixed by configuration: every expected feature (the profile's, then
rule-only ones) times every check of ``FEATURE_CHECKS``, plus
``(__unexpected__, unexpected)`` and ``(__all__, volume_low | volume_high |
missing_period)``. Checks that are disabled keep their counter, at 0.

The "major data-quality problem" signal is :class:`RecentQuality`: over the
last closed slice, the share of records with any violation
(``bad_record_share``, 0 to 1) and the violations per record. A reasonable
alert is ``bad_record_share > 0.1`` with ``records >= 20``, or a volume verdict
of ``low`` with ``missing_run >= 3``.

Usage::

    monitor = QualityMonitor(profile, rules=load_rules("quality.yaml"), range_tolerance=0.1,
                             expected_rate=None, slice_seconds=60.0)
    monitor.observe(records)
    snap = monitor.snapshot()
"""

from __future__ import annotations

from sidecar.quality.checks import ALL, CHECKS, FEATURE_CHECKS, UNEXPECTED, VOLUME_CHECKS, Check
from sidecar.quality.monitor import DEFAULT_EXAMPLES, DEFAULT_RANGE_TOLERANCE, DEFAULT_SLICE_SECONDS, QualityMonitor
from sidecar.quality.rules import FeatureRule, QualityRules, QualityRulesError, load_rules
from sidecar.quality.snapshot import Example, Freshness, QualitySnapshot, RecentQuality
from sidecar.quality.volume import HIGH_RATIO, LOW_RATIO, Verdict, VolumeState

__all__ = [
    "ALL",
    "CHECKS",
    "DEFAULT_EXAMPLES",
    "DEFAULT_RANGE_TOLERANCE",
    "DEFAULT_SLICE_SECONDS",
    "FEATURE_CHECKS",
    "HIGH_RATIO",
    "LOW_RATIO",
    "UNEXPECTED",
    "VOLUME_CHECKS",
    "Check",
    "Example",
    "FeatureRule",
    "Freshness",
    "QualityMonitor",
    "QualityRules",
    "QualityRulesError",
    "QualitySnapshot",
    "RecentQuality",
    "Verdict",
    "VolumeState",
    "load_rules",
]
