"""The five metric tables of the OpenTelemetry Collector's ``clickhouse`` exporter.

Column names and types are the exporter's, so a table we create can be fed by the
exporter and a table the exporter created answers our queries. ``MergeTree``,
partitioned by day, sorted as the exporter sorts (service, metric, attributes, time).
"""

from __future__ import annotations

from telemetryflow.collector.store.clickhouse._tables import Tables

__all__ = ["metric_tables_ddl"]

_MAP = "Map(LowCardinality(String), String)"

_COMMON = f"""
    ResourceAttributes {_MAP} CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes {_MAP} CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName String CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes {_MAP} CODEC(ZSTD(1)),
    StartTimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),"""

_EXEMPLARS = f"""
    Flags UInt32 CODEC(ZSTD(1)),
    Exemplars Nested (
        FilteredAttributes {_MAP},
        TimeUnix DateTime64(9),
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),"""

_INDEXES = """
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1"""

_ENGINE = """
) ENGINE = MergeTree
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""

_HIST_STATS = """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),"""

_MIN_MAX = """
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),"""

_EXTRA = {
    "gauge": "\n    Value Float64 CODEC(ZSTD(1))," + _EXEMPLARS,
    "sum": "\n    Value Float64 CODEC(ZSTD(1)),"
    + _EXEMPLARS
    + "\n    AggregationTemporality Int32 CODEC(ZSTD(1)),"
    + "\n    IsMonotonic Boolean CODEC(Delta, ZSTD(1)),",
    "histogram": _HIST_STATS
    + """
    BucketCounts Array(UInt64) CODEC(ZSTD(1)),
    ExplicitBounds Array(Float64) CODEC(ZSTD(1)),"""
    + _EXEMPLARS
    + _MIN_MAX,
    "exponential_histogram": _HIST_STATS
    + """
    Scale Int32 CODEC(ZSTD(1)),
    ZeroCount UInt64 CODEC(ZSTD(1)),
    PositiveOffset Int32 CODEC(ZSTD(1)),
    PositiveBucketCounts Array(UInt64) CODEC(ZSTD(1)),
    NegativeOffset Int32 CODEC(ZSTD(1)),
    NegativeBucketCounts Array(UInt64) CODEC(ZSTD(1)),"""
    + _EXEMPLARS
    + _MIN_MAX,
    "summary": _HIST_STATS
    + """
    ValueAtQuantiles Nested (
        Quantile Float64,
        Value Float64
    ) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),""",
}

METRIC_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
"""The :class:`Tables` fields naming the metric tables, one per OTLP point type."""


def metric_tables_ddl(tables: Tables, existing: frozenset[str] = frozenset()) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` for the metric tables not in ``existing`` (the
    database must exist)."""
    return [
        f"CREATE TABLE IF NOT EXISTS {tables.qualified(getattr(tables, kind))} ("
        + _COMMON
        + _EXTRA[kind]
        + _INDEXES
        + _ENGINE
        for kind in METRIC_KINDS
        if getattr(tables, kind) not in existing
    ]
