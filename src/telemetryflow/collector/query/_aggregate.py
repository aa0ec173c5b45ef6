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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.query._exponential import ExpBuckets

__all__ = ["Accumulator", "Aggregation", "exact_quantile", "histogram_quantile", "parse_agg"]

_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
_SIMPLE = ("sum", "avg", "count", "min", "max", "last", "rate")


@dataclass(frozen=True)
class Aggregation:
    """``name`` is one of sum/avg/count/min/max/last/rate/quantile; ``q`` set for quantiles."""

    name: str
    q: float = 0.0

    @property
    def label(self) -> str:
        return f"p{self.q * 100:g}" if self.name == "quantile" else self.name


def parse_agg(agg: str | None, percentile: str | None) -> Aggregation:
    """``p50``/``p90``/``p95``/``p99`` (any ``pNN.N``) or sum/avg/count/min/max/last/rate.

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
    raise BadRequestError(
        400, "agg must be one of p50, p90, p95, p99, sum, avg, count, min, max, last, rate"
    )


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
    """Everything known about one series in one step bucket.

    Raw values arrive already summarised by the database (count, sum, min, max, the
    latest value and, for a percentile query, the percentile itself); histogram points
    arrive one by one and their buckets are added up here, exponential ones at the
    lowest scale seen.
    """

    count: float = 0.0
    total: float = 0.0
    low: float | None = None
    high: float | None = None
    last: tuple[int, float] | None = None
    """``(time_ns, value)`` of the latest raw value."""
    quantile: float | None = None
    bounds: list[float] | None = None
    counts: list[float] = field(default_factory=list)
    exp: ExpBuckets | None = None
    hist_count: float = 0.0
    hist_sum: float = 0.0
    hist_min: float | None = None
    hist_max: float | None = None

    def add_stats(self, count: float, total: float, low: float | None, high: float | None) -> None:
        self.count += count
        self.total += total
        self.low = _pick(min, self.low, low)
        self.high = _pick(max, self.high, high)

    def add_last(self, time_ns: int, value: float) -> None:
        if self.last is None or time_ns >= self.last[0]:
            self.last = (time_ns, value)

    def add_exponential(
        self, buckets: ExpBuckets, total: float, summed: float | None,
        low: float | None, high: float | None,
    ) -> None:  # fmt: skip
        self.exp = buckets if self.exp is None else self.exp.plus(buckets)
        self._add_hist_stats(total, summed, low, high)

    def add_histogram(
        self,
        bounds: Sequence[float],
        counts: Sequence[float],
        total: float,
        summed: float | None,
        low: float | None,
        high: float | None,
    ) -> None:
        self._merge_explicit(bounds, counts)
        self._add_hist_stats(total, summed, low, high)

    def _merge_explicit(self, bounds: Sequence[float], counts: Sequence[float]) -> None:
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

    def _add_hist_stats(
        self, total: float, summed: float | None, low: float | None, high: float | None
    ) -> None:
        self.hist_count += total
        self.hist_sum += summed or 0.0
        self.hist_min = _pick(min, self.hist_min, low)
        self.hist_max = _pick(max, self.hist_max, high)

    def merge(self, other: Accumulator) -> None:
        """Add ``other`` (another bucket of the same series) into this one."""
        self.add_stats(other.count, other.total, other.low, other.high)
        if other.last is not None:
            self.add_last(*other.last)
        if other.exp is not None:
            self.exp = other.exp if self.exp is None else self.exp.plus(other.exp)
        if other.bounds is not None:
            self._merge_explicit(other.bounds, other.counts)
        self._add_hist_stats(other.hist_count, other.hist_sum, other.hist_min, other.hist_max)

    def result(self, agg: Aggregation, seconds: float = 0.0) -> float | None:
        """The aggregate, or None when there is nothing to aggregate or the result is
        not a finite number (values near the float limit overflow a sum).

        ``seconds`` is the length of the bucket, for ``rate``.
        """
        try:
            value = self._result(agg, seconds)
        except OverflowError:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    def _result(self, agg: Aggregation, seconds: float) -> float | None:
        count = self.count + self.hist_count
        if agg.name == "count":
            return count
        if agg.name == "sum":
            return self.total + self.hist_sum
        if agg.name == "avg":
            return (self.total + self.hist_sum) / count if count else None
        if agg.name == "min":
            return _pick(min, self.low, self.hist_min)
        if agg.name == "max":
            return _pick(max, self.high, self.hist_max)
        if agg.name == "last":
            return None if self.last is None else self.last[1]
        if agg.name == "rate":
            increase = self.total if self.count else self.hist_count
            return increase / seconds if seconds > 0 and count else None
        buckets = self._buckets()
        if buckets is None:
            return self.quantile
        estimate = histogram_quantile(agg.q, *buckets)
        return _clamp(estimate, self.hist_min, self.hist_max)

    def _buckets(self) -> tuple[list[float], list[float]] | None:
        """All histogram counts on one explicit layout, or None without histograms."""
        explicit = self.exp.explicit() if self.exp is not None else None
        if self.bounds is None:
            return None if explicit is None else (explicit[0], [float(c) for c in explicit[1]])
        if explicit is None:
            return self.bounds, self.counts
        merged = Accumulator(bounds=list(self.bounds), counts=list(self.counts))
        merged._merge_explicit(*explicit)
        return merged.bounds or [], merged.counts


def _pick(
    choose: Callable[[float, float], float], a: float | None, b: float | None
) -> float | None:
    if a is None:
        return b
    return a if b is None else choose(a, b)


def _clamp(value: float | None, low: float | None, high: float | None) -> float | None:
    """Keep an interpolated quantile inside the observed range OTLP reports (min/max)."""
    if value is None:
        return None
    if low is not None and value < low:
        return low
    if high is not None and value > high:
        return high
    return value
