"""The status page's SVG charts and number formats: what they draw, what they say in words, what they escape."""

from __future__ import annotations

import re

import numpy as np

from sidecar.admin.charts import MAX_POINTS, Series, bins_chart, interval_chart, line_chart, sparkline
from sidecar.admin.markup import NONE, number, percent, seconds
from sidecar.admin.page import refresh_interval


def test_bins_chart_draws_two_bars_per_bin_and_a_table_of_the_same_numbers() -> None:
    html = bins_chart("age", ("≤ 30", "30–40", "> 40"), (0.25, 0.5, 0.25), (0.1, 0.3, 0.6), chart_id="f-0")
    assert html.count("<rect ") == 6
    # Bars scale to the largest share: the current 60 % is the full 196 units.
    assert re.findall(r'width="([0-9.]+)" height="7" fill="#0969da"', html) == ["32.7", "98.0", "196.0"]
    assert '<th scope="row">&gt; 40</th><td>25.0 %</td><td>60.0 %</td>' in html
    label = re.search(r'<svg class="bins"[^>]* role="img" aria-label="([^"]*)"', html)
    assert label is not None
    assert "the largest change is in bin &gt; 40, from 25.0 % to 60.0 %" in label.group(1)


def test_bins_chart_escapes_names_and_cuts_long_labels_only_in_the_drawing() -> None:
    name, category = "<b>x</b>", 'a"b<script>' + "y" * 30
    html = bins_chart(name, (category, "__other__"), (0.5, 0.5), (0.5, 0.5), chart_id="f-1")
    assert "<b>" not in html and "<script>" not in html and 'a"b' not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "a&quot;b&lt;script&gt;" in html
    drawn = re.findall(r'text-anchor="end">([^<]*)</text>', html)
    assert drawn[0] == "a&quot;b&lt;script&gt;yyyy…"  # 16 characters
    assert f'<th scope="row">a&quot;b&lt;script&gt;{"y" * 30}</th>' in html  # whole in the table


def test_line_chart_breaks_at_unknown_values_and_draws_thresholds() -> None:
    times = np.arange(6, dtype=np.float64) * 15 + 1000
    values = np.array([0.05, 0.08, np.nan, 0.15, 0.3, 0.37])
    html = line_chart([Series("age", times, values)], title="PSI", now=1100.0, thresholds=(0.1, 0.2))
    assert html.count("<polyline ") == 2  # the gap splits the line
    assert html.count('class="threshold"') == 2
    ticks = re.findall(r'<text class="tick"[^>]*>([^<]*)</text>', html)
    assert ticks[:3] == ["0", "0.25", "0.5"]  # up to the round number above the highest value
    assert "age: latest 0.37, lowest 0.05, highest 0.37" in html
    assert "<li><svg" in html and "age</li>" in html  # the legend


def test_line_chart_without_values_says_so_and_thins_long_series() -> None:
    empty = Series("f1", np.array([1.0, 2.0]), np.array([np.nan, np.nan]))
    assert line_chart([empty], title="Performance", now=3.0) == '<p class="empty">Performance: no values yet.</p>'
    n = 3 * MAX_POINTS
    long = Series("rate", np.arange(n, dtype=np.float64), np.linspace(0.0, 1.0, n))
    (points,) = re.findall(r'<polyline points="([^"]*)"', line_chart([long], title="rate", now=float(n)))
    coordinates = points.split()
    assert len(coordinates) <= MAX_POINTS + 1
    assert coordinates[-1] == "590.0,10.0"  # the newest point is always kept: right edge, top


def test_sparkline_describes_the_trend() -> None:
    assert sparkline(np.array([np.nan, 0.2]), what="PSI of age") == ""  # one value is not a trend
    html = sparkline(np.array([0.02, np.nan, 0.1, 0.31]), what="PSI of age")
    assert 'aria-label="PSI of age over the last 3 evaluations: from 0.02 to 0.31"' in html
    assert html.count("<polyline") == 2


def test_numbers_read_as_a_person_reads_them() -> None:
    assert [number(v) for v in (None, float("nan"), 0.31415, 12.5, 0.0000123, 12345.6)] == [
        NONE,
        NONE,
        "0.314",
        "12.5",
        "1.23e-05",
        "12,346",
    ]
    assert (percent(0.125), percent(None)) == ("12.5 %", NONE)
    assert [seconds(v) for v in (0.0042, 95.0, 5400.0, 9000.0, 7 * 86400.0)] == [
        "4.2 ms",
        "95 s",
        "90 min",
        "2.5 h",
        "7 d",
    ]


def test_the_page_refreshes_with_the_evaluations_within_bounds() -> None:
    assert [refresh_interval(s) for s in (0.1, 15.0, 3600.0)] == [1, 15, 60]


def test_interval_chart_centres_zero_and_says_which_side_the_interval_lies() -> None:
    html = interval_chart(0.2, 0.1, 0.4, what="relative lift", value=percent)
    # 0 in the middle; the largest magnitude (0.4) at the edge, 56 units from it.
    assert '<line class="zero" x1="60" y1="1" x2="60" y2="19"/>' in html
    assert re.search(r'<line x1="74.0" y1="10" x2="116.0" y2="10"', html)
    assert '<circle cx="88.0" cy="10"' in html
    label = re.search(r'aria-label="([^"]*)"', html)
    assert label is not None
    assert label.group(1) == "relative lift: 20.0 %, interval 10.0 % to 40.0 %, which lies above 0"
    assert "includes 0" in interval_chart(0.1, -0.2, 0.3, what="x")
    assert "lies below 0" in interval_chart(-0.1, -0.2, -0.05, what="x")
    # Nothing to draw without an estimate and both bounds.
    assert interval_chart(0.1, None, 0.3, what="x") == interval_chart(float("nan"), 0.0, 1.0, what="x") == ""
