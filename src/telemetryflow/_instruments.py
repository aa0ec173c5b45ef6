"""Metric recording for the client: cached instruments and a cardinality limit.

Creating an OpenTelemetry instrument per call costs more than the call itself, so
instruments are cached by name (and unit). Each instrument admits at most
``cardinality_limit`` distinct attribute sets; later sets are folded into one
``otel.metric.overflow=true`` series, so totals stay right while memory stays bounded.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry.metrics import Meter

from telemetryflow._attributes import clean_attributes
from telemetryflow._diagnostics import warn_throttled
from telemetryflow._stats import DropReason, Stats

__all__ = ["MetricRecorder"]

OVERFLOW_ATTRIBUTES = {"otel.metric.overflow": True}


class _Limited:
    """An instrument's record function plus the attribute sets it has admitted."""

    __slots__ = ("name", "record", "seen")

    def __init__(self, name: str, record: Callable[..., None]) -> None:
        self.name = name
        self.record = record
        self.seen: set[Any] = set()


class MetricRecorder:
    """Counters, gauges and histograms by name, with validation that never raises."""

    def __init__(self, meter: Meter, stats: Stats, cardinality_limit: int) -> None:
        self._meter = meter
        self._stats = stats
        self._limit = cardinality_limit
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
                found = _Limited(name, self._create(kind, name, unit))
                self._instruments[key] = found
        return found

    def _create(self, kind: str, name: str, unit: str) -> Callable[..., None]:
        if kind == "counter":
            return self._meter.create_counter(name, unit=unit).add
        if kind == "gauge":
            return self._meter.create_gauge(name, unit=unit).set
        return self._meter.create_histogram(name, unit=unit).record

    def _invalid(self, message: str) -> None:
        self._stats.dropped("metrics", DropReason.INVALID, 1)
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
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self._invalid(f"{name!r} needs a number, got {type(value).__name__}")
            return
        if isinstance(value, float) and not math.isfinite(value):
            self._invalid(f"{name!r} got a non-finite value")
            return
        if kind == "counter" and value < 0:
            self._invalid(f"counter {name!r} cannot decrease (got {value})")
            return
        instrument = self._instrument(kind, name, unit if isinstance(unit, str) else "")
        if instrument is None:
            return
        instrument.record(value, self._attributes(instrument, attributes))
