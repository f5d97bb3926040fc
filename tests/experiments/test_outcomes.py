"""The outcomes body: typed items for the outcome metrics, or the whole request refused, each problem named."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.experiments.definition import Experiment, experiment_from_mapping
from sidecar.experiments.outcomes import MAX_KEY_LENGTH, OutcomeItem, OutcomeRequestError, parse_outcomes

EXPERIMENT = experiment_from_mapping(
    {
        "name": "ranker-v2",
        "variants": {"control": {"weight": 0.5}, "treatment": {"weight": 0.5, "upstream": "http://b:8080"}},
        "assignment": {"key": "header:x-user-id"},
        "metrics": {
            "primary": [{"name": "conversion", "source": "outcome", "kind": "proportion"}],
            "secondary": [
                {"name": "accuracy", "source": "label"},
                {"name": "revenue", "source": "outcome", "kind": "mean"},
            ],
        },
        "mde": 0.02,
    }
)


def _parse(document: Any, experiment: Experiment = EXPERIMENT, **options: Any) -> list[OutcomeItem]:
    return parse_outcomes(orjson.dumps(document), experiment, **options)


def _problems(document: Any) -> list[str]:
    with pytest.raises(OutcomeRequestError) as caught:
        _parse(document)
    assert caught.value.status == 422
    assert caught.value.message.endswith(" problem(s) in the outcomes; nothing was stored")
    return caught.value.problems


def test_items_by_request_or_by_unit_come_back_typed_in_order() -> None:
    items = _parse(
        [
            {"request_id": "req-1", "metric": "revenue", "value": 12.5},
            {"request_id": "req-2", "row": 3, "metric": "conversion", "value": True},
            {"unit": "u-17", "metric": "conversion", "value": 1, "timestamp": "2026-11-26T08:00:00Z"},
            {"unit": 4021, "metric": "conversion", "value": 0.0, "timestamp": 1764144000},
            {"unit": "u-18", "metric": "revenue", "value": -3},
        ]
    )
    assert items == [
        OutcomeItem("revenue", 12.5, "req-1", None, None),
        OutcomeItem("conversion", 1.0, "req-2", 3, None),
        OutcomeItem("conversion", 1.0, None, None, "u-17", 1795680000.0),
        OutcomeItem("conversion", 0.0, None, None, "4021", 1764144000.0),  # an integer unit is its digits
        OutcomeItem("revenue", -3.0, None, None, "u-18"),
    ]
    assert all(isinstance(item.value, float) for item in items)
    # One object is one item.
    assert _parse({"unit": "u-1", "metric": "conversion", "value": False}) == [
        OutcomeItem("conversion", 0.0, None, None, "u-1")
    ]


def test_the_key_is_request_id_or_unit_never_both_and_rows_only_with_a_request() -> None:
    assert _problems(
        [
            {"request_id": "r", "unit": "u", "metric": "conversion", "value": 1},
            {"metric": "conversion", "value": 1},
            {"unit": "u", "row": 2, "metric": "conversion", "value": 1},
            {"request_id": "", "metric": "conversion", "value": 1},
            {"request_id": 7, "metric": "conversion", "value": 1},
            {"request_id": "r" * (MAX_KEY_LENGTH + 1), "metric": "conversion", "value": 1},
            {"request_id": "r", "row": -1, "metric": "conversion", "value": 1},
            {"request_id": "r", "row": True, "metric": "conversion", "value": 1},
            {"unit": "", "metric": "conversion", "value": 1},
            {"unit": True, "metric": "conversion", "value": 1},
            {"unit": 1.5, "metric": "conversion", "value": 1},
            {"unit": "u" * (MAX_KEY_LENGTH + 1), "metric": "conversion", "value": 1},
        ]
    ) == [
        "[0]: has both request_id and unit; give one, the key the outcome follows",
        "[1]: needs request_id (with an optional row) or unit; got neither",
        "[2].row: only with request_id (a row of a batch request); a unit has no rows",
        "[3].request_id: required, a non-empty string; got the string ''",
        "[4].request_id: required, a non-empty string; got the number 7",
        f"[5].request_id: longer than {MAX_KEY_LENGTH} characters",
        "[6].row: expected a non-negative integer (the row of a batch request), got the number -1",
        "[7].row: expected a non-negative integer (the row of a batch request), got a boolean",
        "[8].unit: expected the assignment key's value, a non-empty string or an integer; got the string ''",
        "[9].unit: expected the assignment key's value, a non-empty string or an integer; got a boolean",
        "[10].unit: expected the assignment key's value, a non-empty string or an integer; got the number 1.5",
        f"[11].unit: longer than {MAX_KEY_LENGTH} characters",
    ]


def test_the_metric_must_be_an_outcome_metric_and_the_value_fit_its_kind() -> None:
    assert _problems(
        [
            {"unit": "u", "metric": "accuracy", "value": 1},
            {"unit": "u", "metric": "clicks", "value": 1},
            {"unit": "u", "value": 1},
            {"unit": "u", "metric": "conversion", "value": 0.5},
            {"unit": "u", "metric": "conversion", "value": "1"},
            {"unit": "u", "metric": "conversion"},
            {"unit": "u", "metric": "revenue", "value": True},
            {"unit": "u", "metric": "revenue", "value": "12.5"},
        ]
    ) == [
        # A label metric comes from the labels endpoint, not from here.
        "[0].metric: 'accuracy' is not an outcome metric of experiment 'ranker-v2'; expected one of: conversion,"
        " revenue",
        "[1].metric: 'clicks' is not an outcome metric of experiment 'ranker-v2'; expected one of: conversion, revenue",
        "[2].metric: required, the name of an outcome metric (conversion, revenue); got null",
        "[3].value: conversion is a proportion: expected 0, 1, false or true; got the number 0.5",
        "[4].value: conversion is a proportion: expected 0, 1, false or true; got the string '1'",
        "[5].value: conversion is a proportion: expected 0, 1, false or true; got null",
        "[6].value: revenue is a mean: expected a number; got a boolean",
        "[7].value: revenue is a mean: expected a number; got the string '12.5'",
    ]


def test_unknown_fields_bad_timestamps_and_non_objects_are_named() -> None:
    assert _problems(
        [
            {"unit": "u", "metric": "conversion", "value": 1, "label": 1},
            {"unit": "u", "metric": "conversion", "value": 1, "timestamp": "2026-11-26T08:00:00"},
            {"unit": "u", "metric": "conversion", "value": 1, "timestamp": -5},
            ["u", "conversion", 1],
            {"unit": "u", "metric": "conversion", "value": 1},
        ]
    ) == [
        "[0].label: unknown field; expected metric, request_id, row, timestamp, unit, value",
        "[1].timestamp: expected Unix seconds or an RFC 3339 time with a zone (e.g. 2026-11-26T08:00:00Z), got the"
        " string '2026-11-26T08:00:00'",
        "[2].timestamp: expected Unix seconds or an RFC 3339 time with a zone (e.g. 2026-11-26T08:00:00Z), got the"
        " number -5",
        "[3]: expected an outcome object, not a list",
    ]


def test_the_request_as_a_whole_400_413_422() -> None:
    with pytest.raises(OutcomeRequestError) as caught:
        parse_outcomes(b'{"unit": ', EXPERIMENT)
    assert caught.value.status == 400 and caught.value.message.startswith("the body is not valid JSON")
    item = {"unit": "u", "metric": "conversion", "value": 1}
    with pytest.raises(OutcomeRequestError) as caught:
        _parse([item] * 11, max_items=10)
    assert (caught.value.status, caught.value.message) == (413, "the body holds 11 outcomes; at most 10 per request")
    assert len(_parse([item] * 10, max_items=10)) == 10
    for document, message in (
        ([], "the body is an empty list; send one outcome object or a list of them"),
        ("conversion", "the body must be an outcome object or a list of them, not the string 'conversion'"),
    ):
        with pytest.raises(OutcomeRequestError) as caught:
            _parse(document)
        assert (caught.value.status, caught.value.message, caught.value.problems) == (422, message, [])
    # Many problems are summarised after the first 20.
    problems = _problems([{"unit": "u", "metric": "conversion", "value": 7}] * 25)
    assert len(problems) == 21 and problems[-1] == "... and 5 more problems"
    with pytest.raises(OutcomeRequestError, match="^25 problem"):
        _parse([{"unit": "u", "metric": "conversion", "value": 7}] * 25)


def test_an_experiment_without_outcome_metrics_takes_none() -> None:
    labels_only = experiment_from_mapping(
        {
            "name": "shadow-ranker",
            "mode": "shadow",
            "variants": {"control": {}, "challenger": {"upstream": "http://b:8080"}},
            "metrics": {"primary": [{"name": "accuracy", "source": "label"}]},
            "mde": 0.02,
        }
    )
    with pytest.raises(OutcomeRequestError) as caught:
        _parse({"unit": "u", "metric": "accuracy", "value": 1}, labels_only)
    assert caught.value.status == 422
    assert caught.value.message == (
        "experiment 'shadow-ranker' has no outcome metrics (source: outcome); its metrics come from labels"
    )
