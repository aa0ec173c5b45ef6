"""Aggregations over raw values and histogram buckets.

Percentiles of raw values are exact: linear interpolation between the two closest
ranks (what Prometheus' ``quantile_over_time`` and numpy's default do). Percentiles of
histograms follow Prometheus' ``histogram_quantile``: find the bucket holding the rank
and interpolate linearly inside it, the lowest bucket starting at 0 and the ``+Inf``
bucket answering with the highest finite bound. When the histograms carry the
``min``/``max`` that OTLP allows, the estimate is then clamped into that range (the
true quantile always lies there), which matters for sparse data in wide buckets.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from telemetryflow.collector._decode import BadRequestError

__all__ = ["Accumulator", "Aggregation", "exact_quantile", "histogram_quantile", "parse_agg"]

_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
_SIMPLE = ("sum", "avg", "count", "min", "max")


@dataclass(frozen=True)
class Aggregation:
    """``name`` is one of sum/avg/count/min/max/quantile; ``q`` set for quantiles."""

    name: str
    q: float = 0.0

    @property
    def label(self) -> str:
        return f"p{self.q * 100:g}" if self.name == "quantile" else self.name


def parse_agg(agg: str | None, percentile: str | None) -> Aggregation:
    """``p50``/``p90``/``p95``/``p99`` (any ``pNN.N``) or sum/avg/count/min/max.

    ``percentile`` (``"0.95"`` or ``"95"``) is the 002 document's spelling.
    """
    if agg is None and percentile is not None:
        try:
            q = float(percentile)
        except ValueError:
            raise BadRequestError(400, "percentile must be a number like 0.95") from None
        q = q / 100 if q > 1 else q
        if not 0 <= q <= 1:
            raise BadRequestError(400, "percentile must be between 0 and 1")
        return Aggregation("quantile", q)
    name = (agg or "avg").strip().lower()
    if name in _SIMPLE:
        return Aggregation(name)
    if name == "median":
        return Aggregation("quantile", 0.5)
    match = _PERCENTILE.match(name)
    if match:
        return Aggregation("quantile", float(match.group(1)) / 100)
    raise BadRequestError(400, "agg must be one of p50, p90, p95, p99, sum, avg, count, min, max")


def exact_quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """Quantile of sorted raw values by linear interpolation between closest ranks."""
    if not sorted_values:
        return None
    rank = q * (len(sorted_values) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    weight = rank - low
    return sorted_values[low] * (1 - weight) + sorted_values[high] * weight


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """Prometheus' ``histogram_quantile`` on OTLP explicit buckets.

    ``counts[i]`` observations fell in ``(bounds[i-1], bounds[i]]``; the last count is
    the ``+Inf`` bucket. Returns ``None`` where Prometheus returns NaN.
    """
    if len(counts) != len(bounds) + 1 or len(counts) < 2:
        return None
    cumulative: list[float] = []
    running = 0.0
    for count in counts:
        running += count
        cumulative.append(running)
    total = cumulative[-1]
    if total <= 0:
        return None
    rank = q * total
    b = bisect.bisect_left(cumulative, rank)
    if b >= len(bounds):
        return float(bounds[-1])
    if b == 0 and bounds[0] <= 0:
        return float(bounds[0])
    start, end, in_bucket = 0.0, float(bounds[b]), cumulative[b]
    if b > 0:
        start = float(bounds[b - 1])
        in_bucket -= cumulative[b - 1]
        rank -= cumulative[b - 1]
    if in_bucket <= 0:
        return end
    return start + (end - start) * (rank / in_bucket)


@dataclass
class Accumulator:
    """Collects the raw values and histograms falling in one series bucket."""

    values: list[float] = field(default_factory=list)
    bounds: list[float] | None = None
    counts: list[float] = field(default_factory=list)
    hist_count: float = 0.0
    hist_sum: float = 0.0
    hist_min: float | None = None
    hist_max: float | None = None

    def add_value(self, value: float) -> None:
        self.values.append(value)

    def add_histogram(
        self,
        bounds: Sequence[float],
        counts: Sequence[float],
        total: float,
        summed: float | None,
        low: float | None,
        high: float | None,
    ) -> None:
        if self.bounds is None:
            self.bounds = list(bounds)
            self.counts = [0.0] * (len(bounds) + 1)
        if list(bounds) == self.bounds:
            for i, count in enumerate(counts):
                self.counts[i] += count
        else:  # different layout: move each bucket by its upper bound
            for i, count in enumerate(counts):
                upper = bounds[i] if i < len(bounds) else math.inf
                self.counts[bisect.bisect_left(self.bounds, upper)] += count
        self.hist_count += total
        self.hist_sum += summed or 0.0
        if low is not None:
            self.hist_min = low if self.hist_min is None else min(self.hist_min, low)
        if high is not None:
            self.hist_max = high if self.hist_max is None else max(self.hist_max, high)

    def result(self, agg: Aggregation) -> float | None:
        """The aggregate, or None when there is nothing to aggregate or the result is
        not a finite number (values near the float limit overflow a sum)."""
        try:
            value = self._result(agg)
        except OverflowError:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    def _result(self, agg: Aggregation) -> float | None:
        count = len(self.values) + self.hist_count
        if agg.name == "count":
            return count
        if agg.name == "sum":
            return math.fsum(self.values) + self.hist_sum
        if agg.name == "avg":
            return (math.fsum(self.values) + self.hist_sum) / count if count else None
        if agg.name in ("min", "max"):
            pick = min if agg.name == "min" else max
            extra = self.hist_min if agg.name == "min" else self.hist_max
            candidates = [*self.values, *([extra] if extra is not None else [])]
            return pick(candidates) if candidates else None
        if self.bounds is None:
            return exact_quantile(sorted(self.values), agg.q)
        counts = list(self.counts)
        for value in self.values:  # raw values join the histogram they share a series with
            counts[bisect.bisect_left(self.bounds, value)] += 1
        estimate = histogram_quantile(agg.q, self.bounds, counts)
        return _clamp(estimate, self._low(), self._high())

    def _low(self) -> float | None:
        lows = [*self.values, *([self.hist_min] if self.hist_min is not None else [])]
        return min(lows) if lows and self.hist_min is not None else None

    def _high(self) -> float | None:
        highs = [*self.values, *([self.hist_max] if self.hist_max is not None else [])]
        return max(highs) if highs and self.hist_max is not None else None


def _clamp(value: float | None, low: float | None, high: float | None) -> float | None:
    """Keep an interpolated quantile inside the observed range OTLP reports (min/max)."""
    if value is None:
        return None
    if low is not None and value < low:
        return low
    if high is not None and value > high:
        return high
    return value
