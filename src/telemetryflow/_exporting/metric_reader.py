"""A periodic metric reader whose flush and shutdown honour their deadlines.

OpenTelemetry's ``PeriodicExportingMetricReader`` holds a lock for the whole export,
so a ``force_flush`` waits, without a bound, behind a periodic export that is busy
retrying an unreachable collector. Here the export lock is taken with the caller's
deadline, periodic exports are bounded by the interval, and ``shutdown`` interrupts
everything. Points are cumulative: an export that fails loses nothing, because the
next one carries the same totals.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricReader, MetricsData

from telemetryflow._recording.diagnostics import mark_sdk_thread, warn_throttled

__all__ = ["DeadlineMetricReader"]

_KINDS = (
    Counter,
    UpDownCounter,
    Histogram,
    ObservableCounter,
    ObservableUpDownCounter,
    ObservableGauge,
)


class DeadlineMetricReader(MetricReader):
    """Collects every ``interval`` seconds and hands the data to ``export``."""

    def __init__(
        self, export: Callable[[MetricsData, float | None], bool], interval: float, timeout: float
    ) -> None:
        temporality = dict.fromkeys(_KINDS, AggregationTemporality.CUMULATIVE)
        super().__init__(preferred_temporality=temporality)  # type: ignore[arg-type]
        self._export = export
        self._interval = interval
        self._budget = max(interval, timeout)  # a periodic export never outlives this
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline: float | None = None
        self._thread = threading.Thread(target=self._run, name="telemetryflow-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        mark_sdk_thread()
        while not self._stop.wait(self._interval):
            self.collect_and_export(time.monotonic() + self._budget)

    def collect_and_export(self, deadline: float) -> bool:
        """Collect and export once, giving up at ``deadline`` (monotonic seconds)."""
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        try:
            self._deadline = deadline
            remaining_ms = max(1.0, (deadline - time.monotonic()) * 1000)
            self.collect(timeout_millis=remaining_ms)
            return True
        except Exception as exc:
            warn_throttled(
                "metric-collect", "metric collection failed: %s: %s", type(exc).__name__, exc
            )
            return False
        finally:
            self._deadline = None
            self._lock.release()

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        self._export(metrics_data, self._deadline)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.collect_and_export(time.monotonic() + timeout_millis / 1000)

    def join(self, timeout: float) -> None:
        """Wait for a periodic export in flight to finish (after shutdown)."""
        self._thread.join(max(0.0, timeout))

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        deadline = time.monotonic() + timeout_millis / 1000
        self._stop.set()
        self.collect_and_export(deadline)
        self._thread.join(max(0.0, deadline - time.monotonic()))
