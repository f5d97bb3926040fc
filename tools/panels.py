"""Panel kinds and PromQL helpers for the ml-sidecar dashboard (:mod:`tools.dashboard`).

Every panel reads the ``datasource`` variable, and every query selects one ``$model``: each
``mlsidecar_*`` family has ``model`` as its first label. A panel gets its options set in full
(legend, tooltip, reduction), since Grafana does not fill in a panel whose options are null.

Usage::

    graph("Requests", "Per second.", [(f"sum({rate('mlsidecar_requests_total')})", "requests/s")], unit="reqps")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DataTransformerConfig,
    Panel,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

__all__ = [
    "DATASOURCE",
    "MODEL",
    "Mappings",
    "PanelBuilder",
    "Query",
    "Steps",
    "graph",
    "listing",
    "quantile",
    "rate",
    "ratio",
    "single",
    "states",
]

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
MODEL = 'model="$model"'
RATE = "$__rate_interval"

PanelBuilder = cogbuilder.Builder[Panel]
Query = tuple[str, str]  # (PromQL, legend)
Steps = Sequence[tuple[float | None, str]]  # (from value, colour); None is the base step
Mappings = Mapping[str, tuple[str, str]]  # value -> (text, colour)

# A 0/1 gauge that is 1 when something is wrong, as mlsidecar_alert_active is.
_FIRING: Mappings = {"0": ("ok", "green"), "1": ("firing", "red")}


def rate(family: str, matchers: str = "") -> str:
    """The per-second rate of ``family`` for the model over Grafana's rate interval; ``matchers`` start with ','."""
    return f"rate({family}{{{MODEL}{matchers}}}[{RATE}])"


def quantile(q: float, family: str) -> str:
    """The ``q`` quantile of histogram ``family`` over all replicas (their buckets summed, as they add up)."""
    return f"histogram_quantile({q}, sum by (le) ({rate(family + '_bucket')}))"


def ratio(part: str, whole: str) -> str:
    """``part / whole``, and 0 rather than no data where ``whole`` has series and ``part`` none (no 5xx yet)."""
    return f"({part} or 0 * {whole}) / {whole}"


def _value_map(mappings: Mappings) -> ValueMap:
    return ValueMap(
        options={value: ValueMappingResult(text=text, color=colour) for value, (text, colour) in mappings.items()}
    )


def _thresholds(steps: Steps) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=colour) for value, colour in steps])
    )


def _targets(
    queries: Sequence[Query], *, table_format: bool = False
) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    targets: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    for index, (expr, legend) in enumerate(queries):
        target = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + index))
        targets.append(target.format(PromQueryFormat.TABLE).instant() if table_format else target.range())
    return targets


def graph(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    unit: str,
    span: int = 12,
    steps: Steps = (),
    log: bool = False,
) -> timeseries.Panel:
    """A time series panel; ``steps`` draw threshold lines (an alert's or a guard's); ``log``: a log10 y axis."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets(queries))
        .unit(unit)
        .span(span)
        .height(8)
        .legend(
            common.VizLegendOptions()
            .display_mode(common_models.LegendDisplayMode.LIST)
            .placement(common_models.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(common.VizTooltipOptions().mode(common_models.TooltipDisplayMode.MULTI))
    )
    if steps:
        panel = panel.thresholds(_thresholds(steps)).thresholds_style(
            common.GraphThresholdsStyleConfig().mode(common_models.GraphTresholdsStyleMode.DASHED)
        )
    if log:
        panel = panel.scale_distribution(
            common.ScaleDistributionConfig().type(common_models.ScaleDistribution.LOG).log(10)
        )
    return panel


def single(
    title: str,
    description: str,
    query: Query,
    *,
    unit: str,
    steps: Steps = ((None, "green"),),
    mappings: Mappings | None = None,
    no_value: str | None = None,
    height: int = 4,
) -> stat.Panel:
    """A stat panel of the last value; ``mappings`` turn values into words (``{"1": ("ON", "red")}``)."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets([query]))
        .unit(unit)
        .span(4)
        .height(height)
        .thresholds(_thresholds(steps))
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(common_models.BigValueGraphMode.AREA)
        .color_mode(common_models.BigValueColorMode.VALUE)
    )
    if mappings:
        panel = panel.mappings([_value_map(mappings)])
    if no_value is not None:
        panel = panel.no_value(no_value)
    return panel


def listing(title: str, description: str, queries: Sequence[Query], *, span: int = 12) -> table.Panel:
    """A table of the instant values, one row per series, its labels as columns."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets(queries, table_format=True))
        .span(span)
        .height(8)
        .show_header(True)
        .with_transformation(DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}}))
    )


def states(
    title: str, description: str, query: Query, *, span: int = 12, mappings: Mappings = _FIRING
) -> statetimeline.Panel:
    """A state timeline of a 0/1 gauge, each value named by ``mappings`` (by default green "ok", red "firing")."""
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets([query]))
        .span(span)
        .height(8)
        .mappings([_value_map(mappings)])
        .show_value(common_models.VisibilityMode.NEVER)
        .merge_values(True)
        .legend(common.VizLegendOptions().show_legend(False))
    )
