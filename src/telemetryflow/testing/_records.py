"""What the test receiver recorded, in shapes tests can assert on.

Each accepted export is kept as a :class:`ReceivedRequest` (headers, size,
compression, the decoded message); :class:`SpanRecord`, :class:`MetricRecord` and
:class:`LogEntry` flatten those messages per item, with the resource and scope they
came under, and :func:`attrs` turns OTLP ``KeyValue`` lists into plain dicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from telemetryflow.testing._receiver_http import Signal, Transport

__all__ = ["LogEntry", "MetricRecord", "ReceivedRequest", "SpanRecord", "attrs"]


@dataclass(frozen=True)
class ReceivedRequest:
    """One export the receiver accepted, as it arrived."""

    signal: Signal
    transport: Transport
    headers: dict[str, str]  # lower-cased names; gRPC "-bin" values are base64 text
    body_size: int  # payload bytes on the wire, compressed if it was
    compressed: bool
    message: Any  # the decoded Export{Trace,Metrics,Logs}ServiceRequest
    received_at: float  # time.time()
    path: str


@dataclass(frozen=True)
class SpanRecord:
    resource: dict[str, Any]
    scope: str
    span: Any  # opentelemetry.proto.trace.v1.Span

    @property
    def name(self) -> str:
        return str(self.span.name)

    @property
    def attributes(self) -> dict[str, Any]:
        return attrs(self.span.attributes)


@dataclass(frozen=True)
class MetricRecord:
    resource: dict[str, Any]
    scope: str
    metric: Any  # opentelemetry.proto.metrics.v1.Metric

    @property
    def name(self) -> str:
        return str(self.metric.name)


@dataclass(frozen=True)
class LogEntry:
    resource: dict[str, Any]
    scope: str
    log: Any  # opentelemetry.proto.logs.v1.LogRecord

    @property
    def body(self) -> Any:
        return _any_value(self.log.body)

    @property
    def attributes(self) -> dict[str, Any]:
        return attrs(self.log.attributes)


def _any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attrs(value.kvlist_value.values)
    return getattr(value, kind)


def attrs(kvlist: Iterable[Any]) -> dict[str, Any]:
    """Turn OTLP ``KeyValue`` protos into a plain dict (arrays become lists, kvlists dicts)."""
    return {kv.key: _any_value(kv.value) for kv in kvlist}
