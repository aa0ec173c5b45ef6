"""Metric recording for the client: cached instruments and a cardinality limit.

Creating an OpenTelemetry instrument per call costs more than the call itself, so
instruments are cached by name (and unit). Each instrument admits at most
``cardinality_limit`` distinct attribute sets; later sets are folded into one
``otel.metric.overflow=true`` series, so totals stay right while memory stays bounded.

Most of what OpenTelemetry's ``Counter.add`` costs is per-call work on attributes
that repeat: cleaning them, hashing them, finding their aggregation. The first time
an attribute set is seen it goes through the SDK's own call; after that the
recorder remembers the SDK aggregation that call created (a :class:`_Series`) and
hands later values straight to it, asking the SDK's exemplar filter first, as the
SDK does. The exported points, exemplars included, are the same. When the SDK's
storage does not look as expected (views, several readers, another SDK version),
every value takes the SDK's public call.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from time import time_ns
from typing import Any

from opentelemetry import trace
from opentelemetry.context import get_current
from opentelemetry.metrics import Meter

from telemetryflow._exporting.stats import DropReason, Stats
from telemetryflow._recording.attributes import clean_attributes
from telemetryflow._recording.diagnostics import warn_throttled

__all__ = ["Bound", "BoundHistogram", "MetricRecorder", "record_bound"]

OVERFLOW_ATTRIBUTES = {"otel.metric.overflow": True}
_EXACT_INT = 2**53
_PRIMITIVES = frozenset({str, bool, int, float})
_INVALID_SPAN = trace.INVALID_SPAN
_get_current_span = trace.get_current_span


class _Point:
    """What an SDK aggregation reads from a measurement."""

    __slots__ = ("attributes", "context", "instrument", "time_unix_nano", "value")

    def __init__(
        self, value: Any, time_unix_nano: int, instrument: Any, context: Any, attributes: Any
    ) -> None:
        self.value = value
        self.time_unix_nano = time_unix_nano
        self.instrument = instrument
        self.context = context
        self.attributes = attributes


class _Series:
    """One admitted attribute set of one instrument, bound to its SDK aggregation."""

    __slots__ = ("aggregate", "attributes")

    def __init__(self, aggregate: Callable[[Any, bool], None], attributes: dict[str, Any]) -> None:
        self.aggregate = aggregate
        self.attributes = attributes


class _Limited:
    """An instrument's record function, the attribute sets it has admitted, and the
    series already bound to SDK aggregations (keyed by the caller's raw attributes)."""

    __slots__ = (
        "bindable",
        "instrument",
        "meter_config",
        "name",
        "record",
        "seen",
        "series",
        "should_sample",
    )

    def __init__(self, name: str, instrument: Any, record: Callable[..., None]) -> None:
        self.name = name
        self.instrument = instrument
        self.record = record
        self.seen: set[Any] = set()
        self.series: dict[tuple[Any, ...], _Series] = {}
        self.should_sample: Callable[[Any], bool] = _never
        self.meter_config: Any = None
        self.bindable = True


Bound = tuple[_Limited, _Series]
"""What :meth:`MetricRecorder.bound` returns."""


def record_bound(instrument: _Limited, series: _Series, value: float, in_span: Any = None) -> None:
    """A value the recorder has validated (or that needs no validation: a finite
    float) straight into a bound series, after the SDK's exemplar filter.

    ``in_span``: the current context, when the caller knows its span is a sampled
    one (``track`` inside its own span): the trace-based filter's answer is then
    known to be yes, and the context need not be looked up again.
    """
    meter_config = instrument.meter_config
    if meter_config is not None and not meter_config.is_enabled:
        return
    should_sample = instrument.should_sample
    if in_span is not None and should_sample is _sample_in_sampled_span:
        sample, context = True, in_span
    else:
        sample, context = should_sample(value), None
    if sample:
        series.aggregate(
            _Point(
                value, time_ns(), instrument.instrument, context or get_current(), series.attributes
            ),
            True,
        )
    else:
        series.aggregate(_Point(value, 0, instrument.instrument, None, None), False)


def _sample_in_sampled_span(value: Any) -> bool:
    """The SDK's trace-based exemplar filter, for the current context."""
    span = _get_current_span()
    return span is not _INVALID_SPAN and bool(span.get_span_context().trace_flags.sampled)


def _never(value: Any) -> bool:
    return False


def _always(value: Any) -> bool:
    return True


def _exemplar_filter(instrument: Any) -> Callable[[Any], bool]:
    """The instrument's exemplar filter as ``f(value) -> bool``."""
    from opentelemetry.sdk.metrics._internal.exemplar import (
        AlwaysOffExemplarFilter,
        AlwaysOnExemplarFilter,
        TraceBasedExemplarFilter,
    )

    found = instrument._measurement_consumer._sdk_config.exemplar_filter
    kind = type(found)
    if kind is AlwaysOffExemplarFilter:
        return _never
    if kind is AlwaysOnExemplarFilter:
        return _always
    if kind is TraceBasedExemplarFilter:
        return _sample_in_sampled_span
    raise _Unbindable("an exemplar filter of another kind")


def _sampled_in(context: Any) -> bool:
    """The SDK's trace-based exemplar filter, for a measurement's context."""
    span = _get_current_span(context)
    return span is not _INVALID_SPAN and bool(span.get_span_context().trace_flags.sampled)


def _context_filter(instrument: Any) -> Callable[[Any], bool]:
    """The instrument's exemplar filter as ``f(context) -> bool``."""
    plain = _exemplar_filter(instrument)
    return _sampled_in if plain is _sample_in_sampled_span else plain


class BoundHistogram:
    """An SDK histogram recorded with a few attribute dicts that are reused as
    objects (the HTTP middleware's cached sets): after a dict's first value went
    through ``Histogram.record``, its later values go straight to the aggregation
    that call created, after the SDK's exemplar filter, with the same context.
    Values must be finite and non-negative (durations); the caller guarantees it.
    """

    __slots__ = ("_bindable", "_filter", "_instrument", "_series")

    def __init__(self, instrument: Any) -> None:
        self._instrument = instrument
        self._series: dict[int, tuple[dict[str, Any], _Series]] = {}
        self._filter: Callable[[Any], bool] = _never
        self._bindable = True

    def record(
        self, value: float, attributes: dict[str, Any], context: Any = None, sampled: bool = False
    ) -> None:
        """``sampled``: the caller knows ``context`` holds a sampled span (a light span
        it started), so the trace-based filter's answer is yes without asking."""
        found = self._series.get(id(attributes))
        if found is None or found[0] is not attributes:
            self._instrument.record(value, attributes, context=context)
            self._bind(attributes)
            return
        instrument = self._instrument
        meter_config = instrument._meter_config
        if meter_config is not None and not meter_config.is_enabled:
            return
        series = found[1]
        should_sample = self._filter
        if (sampled and should_sample is _sampled_in) or should_sample(context):
            point = _Point(value, time_ns(), instrument, context or get_current(), attributes)
            series.aggregate(point, True)
        else:
            series.aggregate(_Point(value, 0, instrument, None, None), False)

    def _bind(self, attributes: dict[str, Any]) -> None:
        if not self._bindable or len(self._series) >= 1024:
            return
        if any(type(k) is not str or not k or type(v) not in _PRIMITIVES
               for k, v in attributes.items()):  # fmt: skip
            return  # OpenTelemetry would rewrite them: keep its call
        try:
            if not self._series:
                self._filter = _context_filter(self._instrument)
                if not hasattr(self._instrument, "_meter_config"):
                    raise _Unbindable("another instrument layout")
            aggregate = _bind(self._instrument, attributes)
        except Exception:  # another SDK layout: always take the SDK call
            self._bindable = False
            return
        if aggregate is not None:
            self._series[id(attributes)] = (attributes, _Series(aggregate, attributes))


class _Unbindable(Exception):  # noqa: N818 - a signal, not an error
    """The SDK's metric storage is not laid out as expected: use its public calls."""


def _bind(instrument: Any, attributes: dict[str, Any]) -> Callable[[Any, bool], None] | None:
    """The ``aggregate`` of the SDK aggregation holding ``attributes`` (already
    recorded once through the SDK), or None if there is none for these attributes.

    Raises:
        _Unbindable: the SDK's storage is not as expected.
    """
    from opentelemetry.sdk.metrics._internal import _view_instrument_match as vim
    from opentelemetry.sdk.metrics._internal.aggregation import (
        _ExplicitBucketHistogramAggregation,
        _LastValueAggregation,
        _SumAggregation,
    )

    storages = list(instrument._measurement_consumer._reader_storages.values())
    if len(storages) != 1:
        raise _Unbindable("several readers")
    matches = storages[0]._get_or_init_view_instrument_match(instrument)
    if len(matches) != 1 or matches[0]._view._attribute_keys is not None:
        raise _Unbindable("views")
    hash_attributes = getattr(vim, "_hash_attributes", None)
    key = (
        hash_attributes(dict(attributes))
        if hash_attributes is not None
        else frozenset(attributes.items())
    )
    aggregation = matches[0]._attributes_aggregation.get(key)
    if aggregation is None:
        return None
    if type(aggregation) not in (
        _SumAggregation,
        _LastValueAggregation,
        _ExplicitBucketHistogramAggregation,
    ):
        raise _Unbindable("another aggregation")
    if dict(aggregation._attributes or {}) != attributes:
        return None
    aggregate: Callable[[Any, bool], None] = aggregation.aggregate
    return aggregate


class MetricRecorder:
    """Counters, gauges and histograms by name, with validation that never raises."""

    def __init__(self, meter: Meter, stats: Stats, cardinality_limit: int) -> None:
        self._meter = meter
        self._stats = stats
        self._limit = cardinality_limit
        self._series_limit = 2 * cardinality_limit + 64  # raw key orders vary
        self._instruments: dict[tuple[str, str, str], _Limited] = {}
        self._lock = threading.Lock()

    def _instrument(self, kind: str, name: str, unit: str) -> _Limited | None:
        key = (kind, name, unit)
        found = self._instruments.get(key)
        if found is not None:
            return found
        if not isinstance(name, str) or not name:
            self._invalid(f"metric name must be a non-empty string, got {type(name).__name__}")
            return None
        with self._lock:
            found = self._instruments.get(key)
            if found is None:
                found = self._create(kind, name, unit)
                self._instruments[key] = found
        return found

    def _create(self, kind: str, name: str, unit: str) -> _Limited:
        instrument: Any
        if kind == "counter":
            instrument = self._meter.create_counter(name, unit=unit)
            return _Limited(name, instrument, instrument.add)
        if kind == "gauge":
            instrument = self._meter.create_gauge(name, unit=unit)
            return _Limited(name, instrument, instrument.set)
        instrument = self._meter.create_histogram(name, unit=unit)
        return _Limited(name, instrument, instrument.record)

    def _invalid(self, message: str) -> None:
        self._stats.refused("metrics", DropReason.INVALID)
        warn_throttled("metric-invalid:" + message[:40], "dropped a metric value: %s", message)

    def _attributes(self, instrument: _Limited, attributes: Any) -> dict[str, Any]:
        cleaned = clean_attributes(attributes)
        try:
            key = frozenset(cleaned.items())
        except TypeError:  # list values: hash their tuple form
            key = frozenset((k, tuple(v) if isinstance(v, list) else v) for k, v in cleaned.items())
        seen = instrument.seen
        if key in seen:
            return cleaned
        if len(seen) < self._limit:
            seen.add(key)
            return cleaned
        warn_throttled(
            f"cardinality:{instrument.name}",
            "metric %r passed its limit of %d attribute sets; folding new sets "
            "into otel.metric.overflow=true",
            instrument.name,
            self._limit,
        )
        return OVERFLOW_ATTRIBUTES

    def record(self, kind: str, name: str, value: Any, unit: str, attributes: Any) -> None:
        """Record ``value``; bad input is warned about and dropped, never raised."""
        value_type = type(value)
        if value_type is float:
            if not math.isfinite(value):
                self._invalid(f"{name!r} got a non-finite value")
                return
        elif value_type is not int and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            self._invalid(f"{name!r} needs a number, got {type(value).__name__}")
            return
        elif isinstance(value, float) and not math.isfinite(value):
            self._invalid(f"{name!r} got a non-finite value")
            return
        if kind == "counter" and value < 0:
            self._invalid(f"counter {name!r} cannot decrease (got {value})")
            return
        if value_type is int and not -_EXACT_INT <= value <= _EXACT_INT:
            # Past int64 the OTLP encoder fails on every later export of the series;
            # a float keeps the magnitude (and sums of large ints stay encodable).
            value = float(value)
        if type(unit) is not str and not isinstance(unit, str):
            unit = ""
        instrument = self._instruments.get((kind, name, unit)) or self._instrument(kind, name, unit)
        if instrument is None:
            return
        # A known attribute set: straight to its SDK aggregation.
        try:
            raw = (*attributes.items(), *map(type, attributes.values())) if attributes else ()
            series = instrument.series.get(raw)
        except (TypeError, AttributeError):  # unhashable values, or not a mapping
            raw, series = None, None
        if series is not None:
            record_bound(instrument, series, value)
            return
        admitted = self._attributes(instrument, attributes)
        instrument.record(value, admitted)
        if raw is not None and admitted is not OVERFLOW_ATTRIBUTES and instrument.bindable:
            self._remember(instrument, raw, admitted)

    def bound(self, kind: str, name: str, unit: str, attributes: dict[str, Any]) -> Bound | None:
        """The instrument and aggregation a value of ``attributes`` goes to once
        :meth:`record` has bound them (None before that, or when it never will): for a
        caller that records many valid values of one series, :func:`record_bound`."""
        instrument = self._instruments.get((kind, name, unit))
        if instrument is None:
            return None
        raw = (*attributes.items(), *map(type, attributes.values()))
        series = instrument.series.get(raw)
        return None if series is None else (instrument, series)

    def _remember(
        self, instrument: _Limited, raw: tuple[Any, ...], admitted: dict[str, Any]
    ) -> None:
        """Bind ``raw`` (the caller's attributes as a key) to the SDK aggregation the
        call just made, when the attributes are ones OpenTelemetry keeps as they are."""
        if len(instrument.series) >= self._series_limit:
            return
        half = len(raw) // 2
        if any(t not in _PRIMITIVES for t in raw[half:]) or any(
            type(k) is not str or not k for k, _ in raw[:half]
        ):
            return  # OpenTelemetry would rewrite them; keep the SDK call
        try:
            if not instrument.series:
                instrument.should_sample = _exemplar_filter(instrument.instrument)
                instrument.meter_config = getattr(instrument.instrument, "_meter_config", None)
            aggregate = _bind(instrument.instrument, admitted)
        except Exception:  # another SDK layout: always take the SDK call
            instrument.bindable = False
            return
        if aggregate is not None:
            instrument.series[raw] = _Series(aggregate, admitted)
