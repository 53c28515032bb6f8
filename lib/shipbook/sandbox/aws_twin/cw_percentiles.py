"""Percentile statistics (p50, p90, p95, p99, p99.9 ...) for CloudWatch, computed from raw values.

moto 5.2.5 returns no value for a `pNN` statistic, and the `None` it puts into GetMetricData's
result makes the whole request fail with HTTP 500. Here a percentile is computed from the
values published in each period (`Value`, or `Values` with `Counts` expanded), with numpy's
default method ("linear": interpolate between the two closest ranks, rank = q/100 * (n - 1)),
so `numpy.percentile(values, q)` gives the same number. Data published only as StatisticValues
carries no distribution, so no percentile is returned for it (like AWS), and a period without a
value is left out of the result instead of breaking it. GetMetricStatistics also answers
`ExtendedStatistics`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, SupportsFloat

from moto.cloudwatch.exceptions import InvalidParameterCombination
from moto.cloudwatch.models import CloudWatchBackend, MetricDatum, MetricDatumBase, Statistics
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.responses import ActionResult

_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")


def parse_percentile(stat: str | None) -> float | None:
    """`"p99"` -> 99.0, `"p99.9"` -> 99.9; None for anything that is not a percentile."""
    match = _PERCENTILE.match(stat or "")
    return float(match.group(1)) if match else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """numpy.percentile(values, q) with the default 'linear' method; None for no values."""
    if not values:
        return None
    ordered = sorted(float(v) for v in values)
    position = (len(ordered) - 1) * (q / 100.0)  # numpy's virtual index, computed the same way
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    a, b, t = ordered[low], ordered[high], position - low
    diff = b - a
    # numpy's _lerp: the form that is exact at t == 1 for the upper half
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def raw_values(data: Sequence[MetricDatumBase]) -> list[float]:
    """The individual values of a period (statistic sets carry none)."""
    return [float(d.value) for d in data if isinstance(d, MetricDatum)]


def statistic(data: Sequence[MetricDatumBase], stat: str) -> float | None:
    """Any statistic (Sum, Average, ..., pNN) of the data of one period; None without data."""
    if not data:
        return None
    q = parse_percentile(stat)
    if q is not None:
        return percentile(raw_values(data), q)
    stats = Statistics([stat], None)  # type: ignore[arg-type]
    stats.metric_data = list(data)
    value = _original_get_statistics_for_type(stats, stat)
    return None if value is None else float(value)


_original_get_statistics_for_type = Statistics.get_statistics_for_type
_original_get_metric_data = CloudWatchBackend.get_metric_data


def _get_statistics_for_type(self: Statistics, stat: str) -> SupportsFloat | None:
    q = parse_percentile(stat)
    if q is not None:
        return percentile(self.metric_single_values_list, q)
    return _original_get_statistics_for_type(self, stat)


def _get_metric_data(self: CloudWatchBackend, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """moto's result with the periods that have no value for the statistic left out."""
    results = _original_get_metric_data(self, *args, **kwargs)
    for result in results:
        pairs = [(t, v) for t, v in zip(result["timestamps"], result["values"], strict=True) if v is not None]
        result["timestamps"] = [t for t, _ in pairs]
        result["values"] = [v for _, v in pairs]
    return results


def _get_metric_statistics(self: CloudWatchResponse) -> ActionResult:
    """GetMetricStatistics with ExtendedStatistics (percentiles) answered."""
    metric_name = self._get_param("MetricName")
    statistics = self._get_param("Statistics", [])
    extended = self._get_param("ExtendedStatistics", [])
    if not statistics and not extended:
        raise InvalidParameterCombination("Must specify either Statistics or ExtendedStatistics")
    datapoints = self.cloudwatch_backend.get_metric_statistics(
        self._get_param("Namespace"),
        metric_name,
        self._get_param("StartTime"),
        self._get_param("EndTime"),
        self._get_int_param("Period"),
        statistics,
        unit=self._get_param("Unit"),
        dimensions=self._get_param("Dimensions", []),
    )
    if extended:
        for point in datapoints:
            values = point.metric_single_values_list
            computed = {p: percentile(values, parse_percentile(p) or 0.0) for p in extended}
            point.extended_statistics = {k: v for k, v in computed.items() if v is not None}
        datapoints = [p for p in datapoints if statistics or p.extended_statistics]
    return ActionResult({"Label": metric_name, "Datapoints": datapoints})


def install() -> None:
    """Patch moto's statistics, GetMetricData and GetMetricStatistics."""
    Statistics.get_statistics_for_type = _get_statistics_for_type  # type: ignore[method-assign]
    CloudWatchBackend.get_metric_data = _get_metric_data  # type: ignore[method-assign]
    CloudWatchResponse.get_metric_statistics = _get_metric_statistics  # type: ignore[method-assign]
