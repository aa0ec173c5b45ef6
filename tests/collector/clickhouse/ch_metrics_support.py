"""Shared pieces of the ClickHouse metric tests: one chDB engine, OTLP builders, both stores.

chDB opens one data directory per process, so every test shares one engine and gets a
database of its own.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from telemetryflow.collector.ingest._exemplars import exemplar_rows
from telemetryflow.collector.ingest._otlp import point_rows
from telemetryflow.collector.store.clickhouse._metrics_ddl import metric_tables_ddl
from telemetryflow.collector.store.clickhouse._metrics_write import metric_rows
from telemetryflow.collector.store.clickhouse._seam import ChdbConnection
from telemetryflow.collector.store.clickhouse._tables import Tables
from telemetryflow.collector.store.sqlite._store import Store, WriteBatch

S = 1_000_000_000
BASE = 1_700_000_000 * S
"""A fixed instant the test data is laid out from."""
CUMULATIVE, DELTA = 2, 1


@functools.cache
def engine() -> ChdbConnection:
    """The process' one chDB engine (closed and removed at exit)."""
    path = tempfile.mkdtemp(prefix="tf-chdb-metrics-")
    conn = ChdbConnection(path)

    def close() -> None:
        conn.close()
        shutil.rmtree(path, ignore_errors=True)

    atexit.register(close)
    return conn


@contextmanager
def fresh_tables(time_type: str = "DateTime64(9)") -> Iterator[Tables]:
    """A database of its own with the exporter's metric tables (``time_type`` for the
    sum table's time columns: some exporter versions use ``DateTime``)."""
    tables = Tables(database="m_" + uuid.uuid4().hex[:16])
    ch = engine()
    ch.command(f"CREATE DATABASE {tables.database}")
    for ddl in metric_tables_ddl(tables):
        if "otel_metrics_sum" in ddl and time_type != "DateTime64(9)":
            ddl = ddl.replace("TimeUnix DateTime64(9) CODEC", f"TimeUnix {time_type} CODEC")
            ddl = ddl.replace("toUnixTimestamp64Nano(TimeUnix)", "TimeUnix")
        ch.command(ddl)
    try:
        yield tables
    finally:
        ch.command(f"DROP DATABASE {tables.database}")


def kv(attrs: Mapping[str, Any]) -> list[KeyValue]:
    out = []
    for key, value in attrs.items():
        if isinstance(value, bool):
            any_value = AnyValue(bool_value=value)
        elif isinstance(value, int):
            any_value = AnyValue(int_value=value)
        elif isinstance(value, float):
            any_value = AnyValue(double_value=value)
        else:
            any_value = AnyValue(string_value=str(value))
        out.append(KeyValue(key=key, value=any_value))
    return out


def request(resource: Mapping[str, Any], *metrics: pb.Metric) -> ExportMetricsServiceRequest:
    """One export request: one resource, one scope, these metrics."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(kv(resource))
    sm = rm.scope_metrics.add()
    sm.scope.name = "tests"
    sm.metrics.extend(metrics)
    return req


def number(t: int, value: float, attrs: Mapping[str, Any] | None = None, start: int = 0,
           exemplars: Sequence[pb.Exemplar] = ()) -> pb.NumberDataPoint:  # fmt: skip
    point = pb.NumberDataPoint(time_unix_nano=t, start_time_unix_nano=start, as_double=value)
    point.attributes.extend(kv(attrs or {}))
    point.exemplars.extend(exemplars)
    return point


def exemplar(t: int, value: float, trace: int) -> pb.Exemplar:
    return pb.Exemplar(time_unix_nano=t, as_double=value, trace_id=trace.to_bytes(16, "big"),
                       span_id=(trace + 1).to_bytes(8, "big"))  # fmt: skip


def gauge(name: str, *points: pb.NumberDataPoint, unit: str = "") -> pb.Metric:
    return pb.Metric(name=name, unit=unit, gauge=pb.Gauge(data_points=points))


def counter(name: str, *points: pb.NumberDataPoint, temporality: int = CUMULATIVE,
            monotonic: bool = True, unit: str = "") -> pb.Metric:  # fmt: skip
    data = pb.Sum(data_points=points, aggregation_temporality=temporality,
                  is_monotonic=monotonic)  # fmt: skip
    return pb.Metric(name=name, unit=unit, sum=data)


def hist_point(t: int, bounds: Sequence[float], counts: Sequence[int], total: float,
               attrs: Mapping[str, Any] | None = None, start: int = 0,
               low: float | None = None, high: float | None = None,
               exemplars: Sequence[pb.Exemplar] = ()) -> pb.HistogramDataPoint:  # fmt: skip
    point = pb.HistogramDataPoint(time_unix_nano=t, start_time_unix_nano=start,
                                  count=sum(counts), sum=total, explicit_bounds=bounds,
                                  bucket_counts=counts)  # fmt: skip
    if low is not None:
        point.min = low
    if high is not None:
        point.max = high
    point.attributes.extend(kv(attrs or {}))
    point.exemplars.extend(exemplars)
    return point


def histogram(name: str, *points: pb.HistogramDataPoint,
              temporality: int = CUMULATIVE) -> pb.Metric:  # fmt: skip
    return pb.Metric(name=name, histogram=pb.Histogram(
        data_points=points, aggregation_temporality=temporality))  # fmt: skip


def exp_point(t: int, scale: int, offset: int, counts: Sequence[int], total: float,
              attrs: Mapping[str, Any] | None = None, start: int = 0, zero: int = 0,
              low: float | None = None,
              high: float | None = None) -> pb.ExponentialHistogramDataPoint:  # fmt: skip
    point = pb.ExponentialHistogramDataPoint(
        time_unix_nano=t, start_time_unix_nano=start, count=sum(counts) + zero, sum=total,
        scale=scale, zero_count=zero,
        positive=pb.ExponentialHistogramDataPoint.Buckets(offset=offset, bucket_counts=counts),
    )  # fmt: skip
    if low is not None:
        point.min = low
    if high is not None:
        point.max = high
    point.attributes.extend(kv(attrs or {}))
    return point


def exp_histogram(name: str, *points: pb.ExponentialHistogramDataPoint,
                  temporality: int = CUMULATIVE) -> pb.Metric:  # fmt: skip
    return pb.Metric(name=name, exponential_histogram=pb.ExponentialHistogram(
        data_points=points, aggregation_temporality=temporality))  # fmt: skip


def summary(name: str, *points: tuple[int, int, float, Mapping[str, Any]]) -> pb.Metric:
    data = pb.Summary()
    for t, count, total, attrs in points:
        point = data.data_points.add(time_unix_nano=t, count=count, sum=total)
        point.attributes.extend(kv(attrs))
        point.quantile_values.add(quantile=0.5, value=total / max(count, 1))
    return pb.Metric(name=name, summary=data)


def write_clickhouse(tables: Tables, project: str, *requests: ExportMetricsServiceRequest) -> None:
    for req in requests:
        for kind, rows in metric_rows(req, project, BASE).items():
            engine().insert(tables.qualified(getattr(tables, kind)), rows)


def write_sqlite(store: Store, project: str, *requests: ExportMetricsServiceRequest) -> None:
    for req in requests:
        rows = point_rows(req, project, BASE).rows
        store.submit(WriteBatch(points=rows, exemplars=exemplar_rows(req, project, BASE)))
