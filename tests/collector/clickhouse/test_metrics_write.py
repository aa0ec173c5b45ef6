"""OTLP metric points as the exporter's rows, and the exporter's tables as we create them."""

from __future__ import annotations

import math

from ch_metrics_support import (
    BASE,
    S,
    counter,
    engine,
    exemplar,
    fresh_tables,
    gauge,
    hist_point,
    histogram,
    number,
    request,
    write_clickhouse,
)

from telemetryflow.collector.store.clickhouse._metrics_write import metric_rows

COMMON = {
    "ResourceAttributes": "Map(LowCardinality(String), String)",
    "ResourceSchemaUrl": "String", "ScopeName": "String", "ScopeVersion": "String",
    "ScopeAttributes": "Map(LowCardinality(String), String)",
    "ScopeDroppedAttrCount": "UInt32", "ScopeSchemaUrl": "String",
    "ServiceName": "LowCardinality(String)", "MetricName": "String",
    "MetricDescription": "String", "MetricUnit": "String",
    "Attributes": "Map(LowCardinality(String), String)",
    "StartTimeUnix": "DateTime64(9)", "TimeUnix": "DateTime64(9)", "Flags": "UInt32",
}  # fmt: skip
EXEMPLARS = {
    "Exemplars.FilteredAttributes": "Array(Map(LowCardinality(String), String))",
    "Exemplars.TimeUnix": "Array(DateTime64(9))", "Exemplars.Value": "Array(Float64)",
    "Exemplars.SpanId": "Array(String)", "Exemplars.TraceId": "Array(String)",
}  # fmt: skip
HIST = {"Count": "UInt64", "Sum": "Float64", "Min": "Float64", "Max": "Float64",
        "AggregationTemporality": "Int32"}  # fmt: skip
EXPECTED = {
    "gauge": {**COMMON, **EXEMPLARS, "Value": "Float64"},
    "sum": {**COMMON, **EXEMPLARS, "Value": "Float64", "AggregationTemporality": "Int32",
            "IsMonotonic": "Bool"},
    "histogram": {**COMMON, **EXEMPLARS, **HIST, "BucketCounts": "Array(UInt64)",
                  "ExplicitBounds": "Array(Float64)"},
    "exponential_histogram": {**COMMON, **EXEMPLARS, **HIST, "Scale": "Int32",
                              "ZeroCount": "UInt64", "PositiveOffset": "Int32",
                              "PositiveBucketCounts": "Array(UInt64)", "NegativeOffset": "Int32",
                              "NegativeBucketCounts": "Array(UInt64)"},
    "summary": {**COMMON, "Count": "UInt64", "Sum": "Float64",
                "ValueAtQuantiles.Quantile": "Array(Float64)",
                "ValueAtQuantiles.Value": "Array(Float64)"},
}  # fmt: skip


def test_tables_have_the_exporters_columns_partitions_and_order() -> None:
    with fresh_tables() as tables:
        for kind, expected in EXPECTED.items():
            table = getattr(tables, kind)
            rows = engine().query(
                "SELECT name, type FROM system.columns WHERE database = {d:String} "
                "AND table = {t:String}",
                {"d": tables.database, "t": table},
            )
            assert dict(map(tuple, rows)) == expected, kind
            ((engine_name, partition, order),) = engine().query(
                "SELECT engine, partition_key, sorting_key FROM system.tables "
                "WHERE database = {d:String} AND name = {t:String}",
                {"d": tables.database, "t": table},
            )
            assert engine_name == "MergeTree" and partition == "toDate(TimeUnix)"
            assert order == "ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix)"


def test_rows_have_the_exporters_shapes_and_our_project() -> None:
    resource = {"service.name": "api", "telemetryflow.project": "intruder", "pid": 42}
    req = request(
        resource,
        gauge("g", number(BASE, 1.5, {"flag": True, "n": 3},
                          exemplars=[exemplar(BASE - S, 2.0, 77)]), unit="ms"),
        counter("c", number(BASE, math.nan), number(BASE + S, 2.0)),
        histogram("h", hist_point(BASE, [1.0], [1, 2], 9.0), hist_point(BASE, [1.0], [1], 0.0)),
    )  # fmt: skip
    rows = metric_rows(req, "acme", BASE + 5 * S)
    (g,) = rows["gauge"]
    assert g["ServiceName"] == "api" and g["MetricName"] == "g" and g["MetricUnit"] == "ms"
    assert g["ResourceAttributes"] == {
        "service.name": "api", "telemetryflow.project": "acme", "pid": "42"}  # fmt: skip
    assert g["Attributes"] == {"flag": "true", "n": "3"}
    assert g["Exemplars.TraceId"] == [(77).to_bytes(16, "big").hex()]
    assert g["Exemplars.SpanId"] == [(78).to_bytes(8, "big").hex()]
    assert g["Exemplars.Value"] == [2.0]
    assert [r["Value"] for r in rows["sum"]] == [2.0]  # NaN left out, as the SQLite store does
    (h,) = rows["histogram"]  # the point with buckets that do not match its bounds is left out
    assert (h["Count"], h["Min"], h["Max"], h["BucketCounts"]) == (3, 0.0, 0.0, [1, 2])
    with fresh_tables() as tables:
        write_clickhouse(tables, "acme", req)
        stored = engine().query(
            "SELECT toUnixTimestamp64Nano(TimeUnix), ResourceAttributes['telemetryflow.project'], "
            f"Exemplars.TimeUnix FROM {tables.qualified(tables.gauge)}"
        )
        assert stored == [[BASE, "acme", ["2023-11-14 22:13:19.000000000"]]]
