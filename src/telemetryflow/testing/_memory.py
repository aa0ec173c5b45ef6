"""Capture a client's telemetry in memory, through the real pipeline minus the wire.

Everything up to the request body is real (batching, encoding, accounting); the
body is decoded back into OTLP messages instead of being sent, so assertions see
exactly what a collector would receive.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from telemetryflow._configuration.builder import TelemetryFlowBuilder
from telemetryflow._exporting.transport import SendResult
from telemetryflow._extras.facade import TelemetryFlowClient
from telemetryflow.testing._records import LogEntry, MetricRecord, SpanRecord, attrs

__all__ = ["InMemoryTransport", "TelemetryCapture", "capture"]

_REQUEST_TYPES = {
    "traces": (
        "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        "ExportTraceServiceRequest",
        "resource_spans",
        "scope_spans",
        "spans",
    ),
    "metrics": (
        "opentelemetry.proto.collector.metrics.v1.metrics_service_pb2",
        "ExportMetricsServiceRequest",
        "resource_metrics",
        "scope_metrics",
        "metrics",
    ),
    "logs": (
        "opentelemetry.proto.collector.logs.v1.logs_service_pb2",
        "ExportLogsServiceRequest",
        "resource_logs",
        "scope_logs",
        "log_records",
    ),
}


class InMemoryTransport:
    """A transport that decodes and keeps every request instead of sending it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[tuple[str, Any]] = []

    def send(self, signal: str, body: bytes, timeout: float) -> SendResult:
        import importlib

        module, cls, *_ = _REQUEST_TYPES[signal]
        message = getattr(importlib.import_module(module), cls).FromString(body)
        with self._lock:
            self.requests.append((signal, message))
        return SendResult(ok=True)

    def abort(self) -> None:
        return None

    def close(self) -> None:
        return None

    def rows(self, signal: str) -> list[tuple[dict[str, Any], str, Any]]:
        _, _, outer, inner, leaf = _REQUEST_TYPES[signal]
        with self._lock:
            messages = [m for s, m in self.requests if s == signal]
        rows: list[tuple[dict[str, Any], str, Any]] = []
        for message in messages:
            for block in getattr(message, outer):
                resource = attrs(block.resource.attributes)
                for scoped in getattr(block, inner):
                    rows.extend(
                        (resource, scoped.scope.name, item) for item in getattr(scoped, leaf)
                    )
        return rows


class TelemetryCapture:
    """A running client and what it has exported. Call :meth:`flush` before asserting."""

    def __init__(self, client: TelemetryFlowClient, transport: InMemoryTransport) -> None:
        self.client = client
        self.transport = transport

    def flush(self) -> None:
        self.client.flush(timeout=5.0)

    def spans(self) -> list[SpanRecord]:
        self.flush()
        return [SpanRecord(*row) for row in self.transport.rows("traces")]

    def span_names(self) -> list[str]:
        return [record.name for record in self.spans()]

    def metrics(self) -> list[MetricRecord]:
        self.flush()
        return [MetricRecord(*row) for row in self.transport.rows("metrics")]

    def find_metric(self, name: str) -> Any | None:
        """The latest exported ``Metric`` proto called ``name``."""
        found = [m.metric for m in self.metrics() if m.name == name]
        return found[-1] if found else None

    def logs(self) -> list[LogEntry]:
        self.flush()
        return [LogEntry(*row) for row in self.transport.rows("logs")]

    def close(self) -> None:
        self.client.shutdown(timeout=5.0)

    def __enter__(self) -> TelemetryCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def capture(builder: TelemetryFlowBuilder | None = None) -> TelemetryCapture:
    """An initialized client whose exports land in memory.

    Args:
        builder: configure service, signals, limits...; credentials and endpoint are
            filled in when missing.
    """
    builder = builder or TelemetryFlowBuilder().with_service("test-service")
    if "key_id" not in builder._explicit:
        builder.with_api_key("tfk_in_memory", "tfs_in_memory")
    if "endpoint" not in builder._explicit:
        builder.with_endpoint("127.0.0.1:4317").with_insecure()
    if "service_name" not in builder._explicit:
        builder.with_service("test-service")
    if "install_global_providers" not in builder._explicit:
        builder.with_global_providers(False)
    if "batch_timeout" not in builder._explicit:
        builder.with_batch_settings(timeout=timedelta(seconds=60))
    transport = InMemoryTransport()
    client = builder.build()
    client._transport_factory = lambda: transport
    client.initialize()
    return TelemetryCapture(client, transport)
