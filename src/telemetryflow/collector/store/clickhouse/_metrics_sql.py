# ruff: noqa: S608  (SQL is built here; values travel as parameters, see below)
"""The SQL of a metric query over the exporter's tables: every aggregation in ClickHouse.

One :class:`ChParts` per query holds the filters (metric, project, window, service,
tags: a tag is the point attribute, else the resource attribute) and the series key
(service and point attributes, or the ``group_by`` tags), then builds:

- the survey: points covered per table, each count stopping one past the limit;
- raw values (gauges, delta and non-monotonic sums, and the increases of cumulative
  monotonic sums: ``value - lagInFrame(value)`` over each stream, the stream's last
  point before the window joining as the first) grouped per series and step into
  count, sum, min, max, latest value and, for a percentile, the exact percentile
  interpolated between the two closest ranks;
- histograms: each cumulative point minus the previous point of its stream (all of it
  after a reset or a change of layout), buckets added up per series and step (explicit
  ones moved onto the first layout by upper bound, exponential ones brought to the
  lowest scale), and the percentile found in the buckets as Prometheus'
  ``histogram_quantile`` does, clamped into the points' min/max (the whole window's of a
  stepped query from the steps' explicit buckets, each step's moved onto the first
  step's layout, as the SQLite store merges its steps); for explicit buckets the
  merged buckets come back and the reader finds the percentile, and the window's
  whole minutes may come from the per-minute rollup (``_rollup_sql.py``);
- summaries: increases of count and sum.

Only aggregated rows (one per series and step) come back. Every value is a
``{name:Type}`` parameter; the only text put into SQL is the table names (checked
identifiers) and numbers this module makes.
"""

from __future__ import annotations

from typing import Any

from telemetryflow.collector.query._metrics_sql import MetricFilter
from telemetryflow.collector.store.clickhouse._rollup_sql import (
    INCREASE_C,
    INCREASE_N,
    INCREASE_S,
    PAIRED,
    T,
    paired_segments,
    segments,
)
from telemetryflow.collector.store.clickhouse._tables import (
    PROJECT_ATTRIBUTE,
    Tables,
    project_clause,
)

__all__ = ["WHOLE", "ChParts"]

WHOLE = -1
"""The bucket index of a series' whole-window percentile in a stepped query."""

_SINCE = "fromUnixTimestamp64Nano({since:Int64})"
_UNTIL = "fromUnixTimestamp64Nano({until:Int64})"
_STREAM = "ServiceName, ResourceAttributes, Attributes, StartTimeUnix"
_HIDDEN = f"('service.name', '{PROJECT_ATTRIBUTE}')"
_RES = "ResourceAttributes"
"""A point's resource (the reader drops ``service.name`` and the project from it: per
distinct resource, not per row)."""
_SID = f"cityHash64({_STREAM}, temporality)"
"""A stream as one number: sorting points by it is far cheaper than by maps."""
_CUM = "(IsMonotonic AND AggregationTemporality = 2)"
_LAG_WINDOW = "ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
_INCREASE = "if(d, toInt64(Count) - toInt64(pn), toInt64(Count))"
"""A point's count, less its predecessor's when ``d`` (it is a cumulative increase)."""
_PRESENT = "(Count > 0 AND NOT (Min = 0 AND Max = 0 AND Sum != 0))"
"""Whether a point's Min/Max were recorded (the exporter writes 0 for absent ones)."""


def _lookup(param: str) -> str:
    """A tag: the point attribute, else the resource attribute, else NULL."""
    key = f"{{{param}:String}}"
    return (
        f"if(mapContains(Attributes, {key}), Attributes[{key}], "
        f"if(mapContains(ResourceAttributes, {key}) AND {key} NOT IN {_HIDDEN}, "
        f"ResourceAttributes[{key}], NULL))"
    )


class ChParts:
    """SQL fragments and queries for one :class:`MetricFilter` over ``tables``."""

    def __init__(self, flt: MetricFilter, tables: Tables, q: float = 0.0) -> None:
        self.flt = flt
        self.tables = tables
        self.verified: list[int] = []
        """Whole minutes of the window the rollup holds every point of (minute numbers)."""
        self.params: dict[str, Any] = {
            "name": flt.name,
            "project": flt.project,
            "default_project": tables.default_project,
            "since": flt.since,
            "until": flt.until,
            "step": flt.step or 1,
            "q": q,
        }
        where = ["MetricName = {name:String}", project_clause()]
        if flt.service is not None:
            where.append("ServiceName = {service:String}")
            self.params["service"] = flt.service
        self.coarse = " AND ".join(w for w in where if w != project_clause()) + (
            f" AND TimeUnix >= {_SINCE} AND TimeUnix <= {_UNTIL}"
        )
        """The window's metric, service and time only: no project, no tags (no map read)."""
        for i, (key, value) in enumerate(flt.tags.items()):
            self.params[f"tk{i}"], self.params[f"tv{i}"] = key, value
            where.append(f"{_lookup(f'tk{i}')} = {{tv{i}:String}}")
        self.filters = " AND ".join(where)
        """Every filter but time."""
        self.window = f"{self.filters} AND TimeUnix >= {_SINCE} AND TimeUnix <= {_UNTIL}"
        self.before = f"{self.filters} AND TimeUnix < {_SINCE} AND TimeUnix >= StartTimeUnix"
        """Points before the window that may be the baseline of a cumulative stream."""
        if flt.group_by is None:
            keys = ["ServiceName", "Attributes"]
        else:
            keys = []
            for i, key in enumerate(flt.group_by):
                if key == "service.name":
                    keys.append("nullIf(ServiceName, '')")
                else:
                    self.params[f"gk{i}"] = key
                    keys.append(_lookup(f"gk{i}"))
            keys = keys or ["CAST(NULL AS Nullable(String))"]  # group_by=[]: one series
        self.width = len(keys)
        self.keys = ", ".join(f"{expr} AS k{i}" for i, expr in enumerate(keys))
        self.key_names = ", ".join(f"k{i}" for i in range(len(keys)))
        self.step = "0" if flt.step is None else "intDiv(t - {since:Int64}, {step:Int64})"

    def table(self, kind: str) -> str:
        return self.tables.qualified(getattr(self.tables, kind))

    def bucket(self, whole: bool) -> str:
        """Each row's bucket; with ``whole`` also counted once more in :data:`WHOLE`."""
        return f"arrayJoin([step_i, {WHOLE}])" if whole else "step_i"

    # -- the survey ----------------------------------------------------------------
    def survey(self, cap: int, coarse: bool = False) -> str:
        """Points covered per source (gauge, plain sum, cumulative sum, histogram,
        exponential histogram, summary), each count stopping at ``cap + 1``.

        ``coarse`` counts by :attr:`coarse`: at least the window's points, and cheap,
        since no row's maps are read (the project is a resource attribute).
        """
        where = self.coarse if coarse else self.window
        sources = [
            ("gauge", ""),
            ("sum", f" AND NOT {_CUM}"),
            ("sum", f" AND {_CUM}"),
            ("histogram", ""),
            ("exponential_histogram", ""),
            ("summary", ""),
        ]
        counts = [
            f"(SELECT count() FROM (SELECT 1 FROM {self.table(kind)} "
            f"WHERE {where}{extra} LIMIT {int(cap) + 1}))"
            for kind, extra in sources
        ]
        return "SELECT " + ", ".join(counts)

    # -- raw values ----------------------------------------------------------------
    def raw_values(self, gauge: bool, plain_sum: bool, cumulative: bool) -> str:
        """A subquery of ``(k..., step_i, t, value, delta, res)``: one row per raw value."""
        cols = f"{_STREAM}, {T} AS t, Value AS value"
        parts = []
        if gauge:
            parts.append(f"SELECT {cols}, value AS delta FROM {self.table('gauge')} "
                         f"WHERE {self.window}")  # fmt: skip
        if plain_sum:
            parts.append(f"SELECT {cols}, value AS delta FROM {self.table('sum')} "
                         f"WHERE {self.window} AND NOT {_CUM}")  # fmt: skip
        if cumulative:
            table = self.table("sum")
            points = (
                f"SELECT {cols}, 1 AS inside FROM {table} WHERE {self.window} AND {_CUM} "
                f"UNION ALL SELECT {_STREAM}, max({T}), argMax(Value, TimeUnix), 0 "
                f"FROM {table} WHERE {self.before} AND {_CUM} GROUP BY {_STREAM}"
            )
            parts.append(
                f"SELECT {_STREAM}, t, value, "
                "if(rn = 1 OR prev > value, value, value - prev) AS delta FROM ("
                "SELECT *, row_number() OVER w AS rn, lagInFrame(value) OVER w AS prev "
                f"FROM (SELECT *, cityHash64({_STREAM}) AS sid FROM ({points})) "
                f"WINDOW w AS (PARTITION BY sid {_LAG_WINDOW})) "
                "WHERE inside"
            )
        inner = " UNION ALL ".join(parts)
        return (
            f"SELECT {self.keys}, {self.step} AS step_i, t, value, delta, "
            f"{_RES} AS res FROM ({inner})"
        )

    def raw_stats(self, values: str, quantile: bool, whole: bool, limit: int) -> str:
        """Per series and bucket: resources, count, sum, min, max, latest (time, value),
        and the exact percentile ``{q}`` (NULL unless ``quantile``)."""
        exact = (
            "if(w = 0, sv[lo + 1], sv[lo + 1] * (1 - w) + sv[least(lo + 2, length(sv))] * w)"
            if quantile
            else "NULL"
        )
        inner = (
            f"SELECT {self.key_names}, {self.bucket(whole)} AS b, groupUniqArray(res) AS rs, "
            "count() AS n, sum(delta) AS total, min(delta) AS low, max(delta) AS high, "
            "max(t) AS last_t, argMax(value, t) AS last_v"
            + (", arraySort(groupArray(delta)) AS sv" if quantile else "")
            + f" FROM ({values}) GROUP BY {self.key_names}, b"
        )
        ranks = (
            ", {q:Float64} * (length(sv) - 1) AS rank, toUInt64(floor(rank)) AS lo, rank - lo AS w"
            if quantile
            else ""
        )
        return (
            f"SELECT {self.key_names}, b, rs, n, total, low, high, last_t, last_v, "
            f"{exact}{ranks} FROM ({inner}) ORDER BY {self.key_names}, b LIMIT {int(limit) + 1}"
        )

    # -- histograms ----------------------------------------------------------------
    def _lagged(self, source: str, baseline: str, lags: str) -> str:
        """Points of the window (``inside``) and the baselines, each with its
        predecessor in its stream (``rn = 1``: none)."""
        return (
            f"SELECT *, row_number() OVER w AS rn, {lags} FROM (SELECT *, {_SID} AS sid "
            f"FROM ({source} UNION ALL {baseline})) WINDOW w AS (PARTITION BY sid {_LAG_WINDOW})"
        )

    def _streams(self, lagged: str, columns: str, aggregates: str, group: str, whole: bool) -> str:
        """The window's points (``columns`` of each) added up per stream and bucket (and
        ``group``), then keyed: a series key is worked out once per stream and bucket,
        not once per point."""
        points = (
            f"SELECT sid, ServiceName, Attributes, ResourceAttributes, {self.step} AS step_i, "
            f"{columns} FROM ({lagged}) WHERE inside"
        )
        per_stream = (
            f"SELECT sid, {self.bucket(whole)} AS b{group}, {aggregates}, any(ServiceName) AS sn, "
            "any(Attributes) AS at, any(ResourceAttributes) AS ra "
            f"FROM ({points}) GROUP BY sid, b{group}"
        )
        return (
            f"SELECT {self.keys}, * FROM (SELECT sn AS ServiceName, at AS Attributes, "
            f"ra AS ResourceAttributes, * EXCEPT (sn, at, ra) FROM ({per_stream}))"
        )

    def explicit(self, whole: bool, rolled: bool = False) -> str:
        """Explicit-bucket histograms per series and bucket:
        ``(k..., b, rs, count, sum, min, max, bounds, counts)``.

        ``rolled``: the :attr:`verified` minutes come from the rollup
        (:mod:`._rollup_sql`), every point as a segment; else every point is read raw.
        """
        streams = self._rolled_streams(whole) if rolled else self._explicit_points(whole)
        return self._explicit_merged(streams, whole)

    def _rolled_streams(self, whole: bool) -> str:
        """Segments (rolled minutes and raw points) paired and added up per stream and
        bucket; each stream's identity joined afterwards, once per stream."""
        span = (self.flt.since, self.flt.until)
        source, identity = segments(
            self.tables, (self.window, self.before, self.filters), span, self.verified
        )
        points = (
            f"SELECT sid, {self.step} AS step_i, n, s, c, bounds, t, lo, hi "
            f"FROM ({paired_segments(source)}) WHERE inside"
        )
        per_stream = (
            f"SELECT sid, {self.bucket(whole)} AS b, bounds, sumForEach(c) AS cs0, sum(n) AS n0, "
            "sum(s) AS s0, min(lo) AS lo0, max(hi) AS hi0, min(t) AS t0 "
            f"FROM ({points}) GROUP BY sid, b, bounds"
        )
        return (
            f"SELECT {self.keys}, * FROM (SELECT sn AS ServiceName, at AS Attributes, "
            "ra AS ResourceAttributes, * EXCEPT (sn, at, ra) "
            f"FROM ({per_stream}) AS p INNER JOIN ({identity}) AS i USING (sid))"
        )

    def _explicit_points(self, whole: bool) -> str:
        """Every point of the window paired with its predecessor, added up per stream."""
        table = self.table("histogram")
        stats = "Count, Sum, Min, Max, ExplicitBounds AS bounds, BucketCounts AS counts"
        source = (
            f"SELECT {_STREAM}, {T} AS t, 1 AS inside, AggregationTemporality AS temporality, "
            f"{stats} FROM {table} WHERE {self.window}"
        )
        baseline = (
            f"SELECT {_STREAM}, max({T}), 0, 2, argMax(Count, TimeUnix), argMax(Sum, TimeUnix), "
            "argMax(Min, TimeUnix), argMax(Max, TimeUnix), argMax(ExplicitBounds, TimeUnix), "
            f"argMax(BucketCounts, TimeUnix) FROM {table} WHERE {self.before} "
            f"AND AggregationTemporality = 2 GROUP BY {_STREAM}"
        )
        lags = ("lagInFrame(Count) OVER w AS pn, lagInFrame(Sum) OVER w AS ps, "
                "lagInFrame(bounds) OVER w AS pb, lagInFrame(counts) OVER w AS pc")  # fmt: skip
        columns = (
            f"{PAIRED} AS d, {INCREASE_N} AS n, {INCREASE_S} AS s, {INCREASE_C} AS c, bounds, t, "
            f"if({_PRESENT}, Min, NULL) AS lo, if({_PRESENT}, Max, NULL) AS hi"
        )
        return self._streams(
            self._lagged(source, baseline, lags),
            columns,
            "sumForEach(c) AS cs0, sum(n) AS n0, sum(s) AS s0, min(lo) AS lo0, max(hi) AS hi0, "
            "min(t) AS t0",
            ", bounds",
            whole,
        )

    def _explicit_merged(self, streams: str, whole: bool) -> str:
        """Per-stream explicit buckets merged per series and bucket; the percentile is
        found in them by the reader (``histogram_quantile``, as the SQLite store does):
        written here as SQL, the estimate's expressions over the merged buckets took
        ClickHouse longer to analyse than the whole query took to run."""
        k = self.key_names
        layouts = (
            f"SELECT {k}, b, bounds, sumForEach(cs0) AS cs, sum(n0) AS n1, sum(s0) AS s1, "
            "min(lo0) AS lo1, max(hi0) AS hi1, min(t0) AS t1, "
            f"groupUniqArray(ResourceAttributes) AS rs1 FROM ({streams}) GROUP BY {k}, b, bounds"
        )
        with_ref = (
            f"SELECT *, argMin(bounds, t1) OVER (PARTITION BY {k}, b) AS ref FROM ({layouts})"
        )
        merged = (
            f"SELECT {k}, b, groupUniqArrayArray(rs1) AS rs, sum(n1) AS n, sum(s1) AS s, "
            f"min(lo1) AS lo, max(hi1) AS hi, any(ref) AS bnds, "
            f"sumForEach({_moved('cs', 'bounds', 'ref')}) AS cnts "
            f"FROM ({with_ref}) GROUP BY {k}, b"
        )
        if whole:  # the window's buckets: the steps' ones, each moved onto the first step's
            wref = f"SELECT *, argMinIf(bnds, b, b != {WHOLE}) OVER (PARTITION BY {k}) AS wref"
            steps = f"if(b = {WHOLE}, [], {_moved('cnts', 'bnds', 'wref')})"
            merged = (
                f"SELECT * EXCEPT (bnds, cnts, wref, wc), if(b = {WHOLE}, wref, bnds) AS bnds, "
                f"if(b = {WHOLE}, wc, cnts) AS cnts FROM (SELECT *, sumForEach({steps}) "
                f"OVER (PARTITION BY {k}) AS wc FROM ({wref} FROM ({merged})))"
            )
        return f"SELECT {k}, b, rs, n, s, lo, hi, bnds, cnts FROM ({merged})"

    def exponential(self, whole: bool) -> str:
        """Exponential histograms per series and bucket, as :meth:`explicit`.

        Negative buckets fold into the zero count, as the SQLite store keeps them.
        """
        table = self.table("exponential_histogram")
        source = (
            f"SELECT {_STREAM}, {T} AS t, 1 AS inside, AggregationTemporality AS temporality, "
            "Count, Sum, Min, Max, Scale AS sc, "
            "toInt64(ZeroCount + arraySum(NegativeBucketCounts)) AS zc, "
            "arrayMap(j -> toInt64(PositiveOffset) + j - 1, arrayEnumerate(PositiveBucketCounts)) "
            "AS ks, arrayMap(x -> toInt64(x), PositiveBucketCounts) AS vs "
            f"FROM {table} WHERE {self.window}"
        )
        baseline = (
            f"SELECT {_STREAM}, max({T}), 0, 2, argMax(Count, TimeUnix), argMax(Sum, TimeUnix), "
            "argMax(Min, TimeUnix), argMax(Max, TimeUnix), argMax(Scale, TimeUnix), "
            "argMax(toInt64(ZeroCount + arraySum(NegativeBucketCounts)), TimeUnix), "
            "argMax(arrayMap(j -> toInt64(PositiveOffset) + j - 1, "
            "arrayEnumerate(PositiveBucketCounts)), TimeUnix), "
            "argMax(arrayMap(x -> toInt64(x), PositiveBucketCounts), TimeUnix) "
            f"FROM {table} WHERE {self.before} AND AggregationTemporality = 2 GROUP BY {_STREAM}"
        )
        lags = ("lagInFrame(Count) OVER w AS pn, lagInFrame(Sum) OVER w AS ps, "
                "lagInFrame(sc) OVER w AS psc, lagInFrame(zc) OVER w AS pzc, "
                "lagInFrame(ks) OVER w AS pks, lagInFrame(vs) OVER w AS pvs")  # fmt: skip
        # both points at the lower scale, the earlier one's counts subtracted
        minus = (
            "arrayReduce('sumMap', [arrayConcat("
            "arrayMap(i -> bitShiftRight(i, sc - least(sc, psc)), ks), "
            "arrayMap(i -> bitShiftRight(i, psc - least(sc, psc)), pks))], "
            "[arrayConcat(vs, arrayMap(x -> -x, pvs))])"
        )
        columns = (
            f"{minus} AS dm, (temporality = 2 AND rn > 1 AND Count >= pn AND zc >= pzc "
            f"AND arrayAll(x -> x >= 0, dm.2)) AS d, {_INCREASE} AS n, "
            "if(d, Sum - ps, Sum) AS s, if(d, least(sc, psc), sc) AS scale, "
            "if(d, zc - pzc, zc) AS zero, if(d, dm, arrayReduce('sumMap', [ks], [vs])) AS kv, t, "
            f"if({_PRESENT}, Min, NULL) AS lo, if({_PRESENT}, Max, NULL) AS hi"
        )
        streams = self._streams(
            self._lagged(source, baseline, lags),
            columns,
            "sumMap(kv.1, kv.2) AS m0, sum(zero) AS z0, sum(n) AS n0, sum(s) AS s0, "
            "min(lo) AS lo0, max(hi) AS hi0",
            ", scale",
            whole,
        )
        k = self.key_names
        scales = (
            f"SELECT {k}, b, scale, sumMap(m0.1, m0.2) AS m, sum(z0) AS z1, sum(n0) AS n1, "
            "sum(s0) AS s1, min(lo0) AS lo1, max(hi0) AS hi1, "
            f"groupUniqArray(ResourceAttributes) AS rs1 FROM ({streams}) GROUP BY {k}, b, scale"
        )
        lowest = f"SELECT *, min(scale) OVER (PARTITION BY {k}, b) AS ms FROM ({scales})"
        merged = (
            f"SELECT {k}, b, groupUniqArrayArray(rs1) AS rs, sum(n1) AS n, sum(s1) AS s, "
            "min(lo1) AS lo, max(hi1) AS hi, any(ms) AS ms1, sum(z1) AS zero, "
            "sumMap(arrayMap(i -> bitShiftRight(i, scale - ms), m.1), m.2) AS mm "
            f"FROM ({lowest}) GROUP BY {k}, b"
        )
        estimate = (
            "multiIf(tot <= 0, NULL, zero >= rk, 0.0, ix = 0, NULL, "
            "st + (pow(base, mm.1[ix] + 1) - st) * ((rk - below) / toFloat64(mm.2[ix])))"
        )
        return (
            f"SELECT {k}, b, rs, n, s, lo, hi, {_clamp(estimate)} FROM (SELECT *, "
            "pow(2.0, pow(2.0, -ms1)) AS base, toFloat64(zero + arraySum(mm.2)) AS tot, "
            "{q:Float64} * tot AS rk, arrayMap(x -> x + zero, arrayCumSum(mm.2)) AS cum, "
            "arrayFirstIndex(x -> x >= rk, cum) AS ix, "
            "toFloat64(if(ix > 1, cum[ix - 1], zero)) AS below, pow(base, mm.1[ix]) AS st "
            f"FROM ({merged}))"
        )

    def summaries(self, whole: bool) -> str:
        """Summaries (always cumulative) per series and bucket: count and sum increases."""
        table = self.table("summary")
        source = (
            f"SELECT {_STREAM}, {T} AS t, 1 AS inside, 2 AS temporality, Count, Sum "
            f"FROM {table} WHERE {self.window}"
        )
        baseline = (
            f"SELECT {_STREAM}, max({T}), 0, 2, argMax(Count, TimeUnix), argMax(Sum, TimeUnix) "
            f"FROM {table} WHERE {self.before} GROUP BY {_STREAM}"
        )
        lags = "lagInFrame(Count) OVER w AS pn, lagInFrame(Sum) OVER w AS ps"
        columns = (f"(rn > 1 AND Count >= pn) AS d, {_INCREASE} AS n, "
                   "if(d, Sum - ps, Sum) AS s")  # fmt: skip
        streams = self._streams(
            self._lagged(source, baseline, lags), columns, "sum(n) AS n0, sum(s) AS s0", "", whole
        )
        k = self.key_names
        return (
            f"SELECT {k}, b, groupUniqArray(ResourceAttributes) AS rs, sum(n0), sum(s0), "
            "CAST(NULL AS Nullable(Float64)), CAST(NULL AS Nullable(Float64)), "
            f"CAST(NULL AS Nullable(Float64)) FROM ({streams}) GROUP BY {k}, b"
        )

    # -- exemplars -----------------------------------------------------------------
    def exemplars(self, per_series: int) -> str:
        """The newest ``per_series`` exemplars (with a trace id) in the window per series:
        ``(k..., time_ns, value, trace_id, span_id)``, oldest first."""
        et = "toUnixTimestamp64Nano(toDateTime64(ex.TimeUnix, 9))"
        parts = [
            f"SELECT {self.keys}, {et} AS et, ex.Value AS ev, ex.TraceId AS etr, "
            f"ex.SpanId AS esp FROM {self.table(kind)} ARRAY JOIN Exemplars AS ex "
            f"WHERE {self.filters} AND TimeUnix >= {_SINCE} AND et >= {{since:Int64}} "
            "AND et <= {until:Int64} AND length(ex.TraceId) = 32 "
            "AND ex.TraceId != repeat('0', 32)"
            for kind in ("gauge", "sum", "histogram", "exponential_histogram")
        ]
        k = self.key_names
        return (
            f"SELECT {k}, et, ev, etr, esp FROM (SELECT *, row_number() OVER "
            f"(PARTITION BY {k} ORDER BY et DESC) AS rn FROM ({' UNION ALL '.join(parts)})) "
            f"WHERE rn <= {int(per_series)} ORDER BY et"
        )


def _moved(counts: str, bounds: str, ref: str) -> str:
    """Explicit bucket ``counts`` of layout ``bounds`` moved onto layout ``ref``: each
    count into the first bucket of ``ref`` whose upper bound is at least its own, as the
    SQLite store's accumulator moves them."""
    return (
        f"if({bounds} = {ref}, {counts}, arrayMap(j -> arraySum(arrayFilter((x, u) -> u = j, "
        f"{counts}, arrayMap(y -> arrayCount(z -> z < y, {ref}), arrayPushBack({bounds}, inf)))), "
        f"range(length({ref}) + 1)))"
    )


def _clamp(estimate: str) -> str:
    """A histogram percentile kept inside the points' min/max (the true one lies there)."""
    return (
        f"multiIf(isNull({estimate} AS est), NULL, lo IS NOT NULL AND est < lo, lo, "
        "hi IS NOT NULL AND est > hi, hi, est)"
    )
