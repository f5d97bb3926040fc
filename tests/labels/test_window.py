"""The labelled window: one row per (request id, row), pruned by prediction time, then to the newest max_rows."""

from __future__ import annotations

from sidecar.labels.window import LabelledWindow
from sidecar.store import Labelled


def joined(request_id: str, timestamp: float, row: int = 0, label: str = "a") -> Labelled:
    return Labelled(
        request_id=request_id,
        row=row,
        timestamp=timestamp,
        model="m",
        version=None,
        variant="primary",
        prediction="a",
        scores=None,
        weight=1.0,
        segments={},
        label=label,
        label_timestamp=None,
        labelled_at=timestamp + 60.0,
    )


def test_a_row_seen_twice_counts_once() -> None:
    window = LabelledWindow(seconds=3600.0, max_rows=100)
    window.add([joined("r1", 1000.0), joined("r1", 1000.0, row=1)])
    window.load([joined("r1", 1000.0, label="b")])  # the start-up query read the first one back
    assert len(window) == 2
    assert window.loaded


def test_take_changed_gives_the_rows_only_when_some_came_or_went() -> None:
    window = LabelledWindow(seconds=3600.0, max_rows=100)
    assert window.take_changed(1000.0) == []  # the first evaluation publishes, even with no rows
    assert window.take_changed(1001.0) is None
    window.add([joined("r1", 1000.0)])
    rows = window.take_changed(1002.0)
    assert rows is not None and [row.request_id for row in rows] == ["r1"]
    assert window.take_changed(1003.0) is None
    # An hour after the prediction, it leaves the window: that is a change too.
    assert window.take_changed(4601.0) == []
    assert len(window) == 0


def test_past_max_rows_the_oldest_predictions_go_first() -> None:
    window = LabelledWindow(seconds=3600.0, max_rows=2)
    window.add([joined("new", 1003.0), joined("old", 1001.0), joined("mid", 1002.0)])
    rows = window.take_changed(1010.0)
    assert rows is not None and sorted(row.request_id for row in rows) == ["mid", "new"]


def test_load_keeps_the_newest_max_rows_of_what_the_store_returned() -> None:
    window = LabelledWindow(seconds=3600.0, max_rows=2)
    window.load([joined(f"r{i}", 1000.0 + i) for i in range(5)])  # oldest first, as the store orders them
    rows = window.take_changed(1010.0)
    assert rows is not None and sorted(row.request_id for row in rows) == ["r3", "r4"]
