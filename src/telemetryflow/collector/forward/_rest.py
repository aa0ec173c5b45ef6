"""What the REST APIs stored, as the OTLP requests an SDK would have sent for it.

Forwarding sends everything the collector accepts, and not everything arrives as OTLP:
001 metric points (``/v1/metrics/report``, ``/v1/metrics/batch``,
``/v1/observability/metrics``) and the observability API's errors and product events
are JSON. Once stored, their rows become OTLP messages (the official protobuf messages
and the official attribute encoder), shaped so an upstream TelemetryFlow collector files
them as the local one did:

* a point is a data point of a gauge, or for a ``counter`` of a monotonic delta sum,
  with the metric's name and unit as sent, its tags as attributes, and ``service.name``
  (the tag the local store files as its service) as the resource's;
* an error is a log record shaped as the SDK's ``capture_error`` sends one (event name
  ``exception``, severity ``ERROR``, the message as body, the ``exception.*`` and
  ``error.*`` attributes over the tags), carrying the ``error_id`` the caller was given
  and the fingerprint it was grouped by;
* a product event is a log record shaped as the SDK's ``track_event`` sends one (its
  name as event name and body, severity ``INFO``, the properties as attributes and the
  distinct id as ``enduser.id``).

Built from the stored rows, so ids, times and values upstream are the stored ones. No
project attribute is added, as none is added to forwarded OTLP: an upstream files what
it gets under the project of the key the forward sends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common._internal import _encode_key_value
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import (
    SEVERITY_NUMBER_ERROR,
    SEVERITY_NUMBER_INFO,
    LogRecord,
    ResourceLogs,
    ScopeLogs,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from telemetryflow._version import __version__
from telemetryflow.collector.ingest._otlp import CAPTURE_EVENT, compact_json

__all__ = ["captures_request", "points_request"]

Row = Sequence[Any]
_SCOPE = InstrumentationScope(name="telemetryflow", version=__version__)
"""The scope the SDK's own captures and metrics carry."""
_OTHER = "_OTHER"


def _key_value(key: str, value: Any) -> KeyValue:
    """One attribute by the official encoder; a value protobuf refuses (an integer past
    64 bits, deep in a JSON property) goes as its JSON text instead of being lost."""
    try:
        encoded: KeyValue = _encode_key_value(key, value)
    except (ValueError, TypeError):
        encoded = KeyValue(key=key, value=AnyValue(string_value=compact_json(value)))
    return encoded


def _attributes(values: Mapping[str, Any]) -> list[KeyValue]:
    return [_key_value(key, value) for key, value in values.items()]


def _resource(service: str) -> Resource:
    return Resource(attributes=[_key_value("service.name", service)] if service else [])


# -- metric points -------------------------------------------------------------------
def points_request(rows: Sequence[Row]) -> ExportMetricsServiceRequest:
    """001 point rows (``_metrics_api.point_row``) as one metrics request.

    One resource per service, one metric per name, kind and unit, points in order.
    """
    request = ExportMetricsServiceRequest()
    blocks: dict[str, ScopeMetrics] = {}
    metrics: dict[tuple[Any, ...], Metric] = {}
    for row in rows:
        (_, service, name, kind, monotonic, temporality, unit, tags, when, start,
         value) = row[:11]  # fmt: skip
        scope = blocks.get(service)
        if scope is None:
            block = request.resource_metrics.add()
            block.CopyFrom(ResourceMetrics(resource=_resource(service)))
            scope = blocks[service] = block.scope_metrics.add(scope=_SCOPE)
        key = (service, name, kind, monotonic, temporality, unit)
        metric = metrics.get(key)
        if metric is None:
            metric = metrics[key] = scope.metrics.add(name=name, unit=unit)
            if kind == "sum":
                metric.sum.is_monotonic = bool(monotonic)
                metric.sum.aggregation_temporality = temporality
            else:
                metric.gauge.SetInParent()
        points = metric.sum.data_points if kind == "sum" else metric.gauge.data_points
        points.append(
            NumberDataPoint(
                attributes=_attributes(json.loads(tags)),
                time_unix_nano=when,
                start_time_unix_nano=start or 0,
                as_double=float(value),
            )
        )
    return request


# -- errors and product events -------------------------------------------------------
def _error_record(row: Row) -> tuple[str, LogRecord]:
    """An error occurrence row (``api._observability.error_row``) as the SDK's capture."""
    (_, service, error_id, fingerprint, error_type, code, message, stack, tags, _, _, _,
     time_ns, received_ns) = row  # fmt: skip
    attributes: dict[str, Any] = dict(json.loads(tags))
    attributes.update({
        "exception.type": error_type, "exception.message": message, "error.type": error_type,
        "error.id": error_id, "error.fingerprint": fingerprint,
    })  # fmt: skip
    if code:
        attributes["error.code"] = code
    if stack:
        attributes["exception.stacktrace"] = stack
    body = message or error_type or _OTHER
    times = (time_ns, received_ns)
    return service, _record(times, SEVERITY_NUMBER_ERROR, body, attributes, CAPTURE_EVENT)


def _record(
    times: tuple[int, int], severity: Any, body: str, attributes: dict[str, Any], event: str
) -> LogRecord:
    """A log record as the SDK's captures send one: severity, body, attributes, event name."""
    return LogRecord(
        time_unix_nano=times[0],
        observed_time_unix_nano=times[1],
        severity_number=severity,
        severity_text="ERROR" if severity == SEVERITY_NUMBER_ERROR else "INFO",
        body=AnyValue(string_value=body),
        attributes=_attributes(attributes),
        event_name=event,
    )


def _event_record(row: Row) -> tuple[str, LogRecord]:
    """A product event row (``api._observability.event_row``) as the SDK's ``track_event``."""
    _, service, event, distinct_id, properties, _, _, _, time_ns, received_ns = row
    attributes: dict[str, Any] = dict(json.loads(properties))
    if distinct_id:
        attributes["enduser.id"] = distinct_id
    return service, _record((time_ns, received_ns), SEVERITY_NUMBER_INFO, event, attributes, event)


def captures_request(errors: Sequence[Row], events: Sequence[Row]) -> ExportLogsServiceRequest:
    """Error occurrence and product event rows as one logs request, one resource per
    service."""
    request = ExportLogsServiceRequest()
    blocks: dict[str, ScopeLogs] = {}
    made = [_error_record(row) for row in errors] + [_event_record(row) for row in events]
    for service, record in made:
        scope = blocks.get(service)
        if scope is None:
            block = request.resource_logs.add()
            block.CopyFrom(ResourceLogs(resource=_resource(service)))
            scope = blocks[service] = block.scope_logs.add(scope=_SCOPE)
        scope.log_records.append(record)
    return request
