# ruff: noqa: S608  (SQL is built here; values travel as parameters)
"""The per-minute rollup of explicit-bucket histograms: its table, how a minute is
rolled, which minutes a query may read from it, and the points as segments.

A **segment** is a run of consecutive points of one stream: its first point (time,
count, sum, bucket counts, bounds), its last point (count, sum, bucket counts), the sum
of its *inner* increases (each point after the first against its predecessor in the
run, by the rule a query applies to any two points: the whole point after a reset or a
change of layout, else the difference), the least Min and greatest Max, and how many
points it holds. A raw point is a segment of one. Pairing each segment's first point
with the previous segment's last point and adding the inner sums gives exactly what
pairing every point with its predecessor gives, so a query may mix rolled minutes and
raw points freely.

The rollup table holds one segment per stream and minute (``telemetryflow_histogram_minutes``,
``ReplacingMergeTree``: two collectors rolling one minute converge; read with ``FINAL``).
A stream-minute whose layout changes inside the minute is not rolled. A query reads a
minute from the rollup only when the minute is *verified*: the raw table holds as many
points of the metric in it as the rollup does. A segment depends on its own points
only (its first point is paired at query time, against whatever precedes it then), so
a point arriving late changes the count of its own minute, which is then read raw, and
nothing else.
"""

from __future__ import annotations

from telemetryflow.collector.store.clickhouse._tables import Tables

__all__ = [
    "MAX_RUNS",
    "MINUTE_NS",
    "ROLLUP_TABLE",
    "T",
    "minute_runs",
    "roll_sql",
    "rollup_ddl",
    "segments",
    "uncovered",
    "verified_sql",
]

ROLLUP_TABLE = "telemetryflow_histogram_minutes"
MINUTE_NS = 60_000_000_000
T = "toUnixTimestamp64Nano(toDateTime64(TimeUnix, 9))"
"""A point's time in nanoseconds, whatever the precision of its column."""
STREAM = "ServiceName, ResourceAttributes, Attributes, StartTimeUnix"
SID = f"cityHash64({STREAM}, toInt32(AggregationTemporality))"
"""A stream as one number, computed alike when rolling and when querying raw rows."""
_MAP = "Map(LowCardinality(String), String)"
_LAG_WINDOW = "ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
_PRESENT = "(Count > 0 AND NOT (Min = 0 AND Max = 0 AND Sum != 0))"
_SAME = "if(length(pc) = length(counts), pc, counts)"
PAIRED = (
    "(temporality = 2 AND rn > 1 AND Count >= pn AND bounds = pb "
    f"AND length(pc) = length(counts) AND arrayAll((a, z) -> a >= z, counts, {_SAME}))"
)
"""Whether a point (``Count``, ``bounds``, ``counts``) is an increase over its
predecessor (``pn``, ``pb``, ``pc``): the rule of every explicit histogram pairing."""
INCREASE_N = "if(d, toInt64(Count) - toInt64(pn), toInt64(Count))"
INCREASE_S = "if(d, Sum - ps, Sum)"
INCREASE_C = f"arrayMap((a, z) -> toInt64(a) - if(d, toInt64(z), 0), counts, {_SAME})"


def rollup_ddl(tables: Tables) -> str:
    """The rollup table: one segment per (metric, stream, minute)."""
    return f"""CREATE TABLE IF NOT EXISTS {tables.qualified(ROLLUP_TABLE)} (
    MetricName String, ServiceName LowCardinality(String), ResourceAttributes {_MAP},
    Attributes {_MAP}, StartTimeUnix DateTime64(9), Temporality Int32, Sid UInt64,
    Minute DateTime, FirstTime Int64, FirstCount UInt64, FirstSum Float64,
    Bounds Array(Float64), FirstCounts Array(UInt64), LastCount UInt64, LastSum Float64,
    LastCounts Array(UInt64), InnerCount Int64, InnerSum Float64, InnerCounts Array(Int64),
    Low Nullable(Float64), High Nullable(Float64), Points UInt32, Rolled DateTime64(3)
) ENGINE = ReplacingMergeTree(Rolled) PARTITION BY toDate(Minute)
ORDER BY (MetricName, Minute, Sid)"""


def roll_sql(tables: Tables) -> str:
    """``INSERT ... SELECT`` rolling the minutes in ``[{lo:Int64}, {hi:Int64})`` (ns,
    whole minutes): every point paired with its predecessor in its stream-minute."""
    raw = tables.qualified(tables.histogram)
    points = (
        f"SELECT MetricName, {STREAM}, toInt32(AggregationTemporality) AS temporality, "
        f"{SID} AS sid, {T} AS t, intDiv(t, {MINUTE_NS}) AS m, Count, Sum, "
        f"ExplicitBounds AS bounds, BucketCounts AS counts, "
        f"if({_PRESENT}, Min, NULL) AS lo, if({_PRESENT}, Max, NULL) AS hi FROM {raw} "
        "WHERE TimeUnix >= fromUnixTimestamp64Nano({lo:Int64}) "
        "AND TimeUnix < fromUnixTimestamp64Nano({hi:Int64})"
    )
    lagged = (
        "SELECT *, row_number() OVER w AS rn, lagInFrame(Count) OVER w AS pn, "
        "lagInFrame(Sum) OVER w AS ps, lagInFrame(bounds) OVER w AS pb, "
        f"lagInFrame(counts) OVER w AS pc FROM ({points}) "
        f"WINDOW w AS (PARTITION BY MetricName, sid, m {_LAG_WINDOW})"
    )
    inner = (
        f"SELECT *, {PAIRED} AS d, if(rn > 1, {INCREASE_N}, 0) AS n, "
        f"if(rn > 1, {INCREASE_S}, 0.0) AS s, "
        f"if(rn > 1, {INCREASE_C}, arrayMap(x -> toInt64(0), counts)) AS c FROM ({lagged})"
    )
    return (
        f"INSERT INTO {tables.qualified(ROLLUP_TABLE)} SELECT MetricName, any(ServiceName), "
        "any(ResourceAttributes), any(Attributes), any(StartTimeUnix), any(temporality), sid, "
        f"toDateTime(m * 60), argMin(t, rn), argMin(Count, rn), argMin(Sum, rn), any(bounds), "
        "argMin(counts, rn), argMax(Count, rn), argMax(Sum, rn), argMax(counts, rn), sum(n), "
        "sum(s), sumForEach(c), min(lo), max(hi), count(), now64(3) "
        f"FROM ({inner}) GROUP BY MetricName, sid, m "
        "HAVING uniqExact(bounds, length(counts)) = 1"
    )


def verified_sql(tables: Tables) -> str:
    """The minutes in ``[{rlo:Int64}, {rhi:Int64})`` (minute numbers) whose points of
    metric ``{name:String}`` are all in the rollup: as many there as in the raw table.
    Only the metric name and time are read from the raw rows (no map)."""
    raw = tables.qualified(tables.histogram)
    rollup = tables.qualified(ROLLUP_TABLE)
    return (
        f"SELECT r.m FROM (SELECT intDiv({T}, {MINUTE_NS}) AS m, count() AS n FROM {raw} "
        "WHERE MetricName = {name:String} "
        f"AND TimeUnix >= fromUnixTimestamp64Nano({{rlo:Int64}} * {MINUTE_NS}) "
        f"AND TimeUnix < fromUnixTimestamp64Nano({{rhi:Int64}} * {MINUTE_NS}) GROUP BY m) AS r "
        "INNER JOIN (SELECT intDiv(toUnixTimestamp(Minute), 60) AS m, sum(Points) AS n "
        f"FROM {rollup} FINAL WHERE MetricName = {{name:String}} "
        "AND Minute >= toDateTime({rlo:Int64} * 60) AND Minute < toDateTime({rhi:Int64} * 60) "
        "GROUP BY m) AS u ON r.m = u.m WHERE r.n = u.n ORDER BY r.m"
    )


def segments(
    tables: Tables, where: tuple[str, str, str], span: tuple[int, int], verified: list[int]
) -> tuple[str, str]:
    """Every point the query pairs, as segments ``(sid, t, inside, temporality, Count,
    Sum, bounds, counts, ln, ls, lc, inn, ins, inc, lo, hi)``: the window's raw points
    outside the ``verified`` minutes, the rollup's segments of those minutes, and each
    stream's baseline (its last point before the window, ``inside = 0``); and each
    stream's identity ``(sid, sn, at, ra)``: service, attributes, resource. The maps
    stay out of the pairing (sorting them is costly).

    ``where`` is the window's, the baseline's and the plain filters (no time) of the
    query; ``span`` its ``since``/``until``. The minutes become a few time ranges, each
    side's primary key skips what the other side holds, and the plan holds no set.
    """
    window, before, filters = where
    raw = tables.qualified(tables.histogram)
    rollup = f"{tables.qualified(ROLLUP_TABLE)} FINAL"
    runs = minute_runs(verified)
    seconds = [(lo * 60, hi * 60) for lo, hi in runs]
    rolled_where = f"PREWHERE {_any_range('Minute', seconds, 'toDateTime')} WHERE {filters}"
    gaps = uncovered(span, [(lo * MINUTE_NS, hi * MINUTE_NS) for lo, hi in runs])
    raw_where = f"PREWHERE {_any_range('TimeUnix', gaps, 'fromUnixTimestamp64Nano')} WHERE {window}"
    points = (
        f"SELECT {SID}, {T}, toUInt8(1), toInt32(AggregationTemporality), Count, Sum, "
        "ExplicitBounds, BucketCounts, Count, Sum, BucketCounts, toInt64(0), toFloat64(0), "
        f"CAST([] AS Array(Int64)), if({_PRESENT}, Min, NULL), if({_PRESENT}, Max, NULL) "
        f"FROM {raw} {raw_where}"
    )
    rolled = (  # first: the union's columns are named after plain columns, not expressions
        "SELECT Sid AS sid, FirstTime AS t, toUInt8(1) AS inside, Temporality AS temporality, "
        "FirstCount AS Count, FirstSum AS Sum, Bounds AS bounds, FirstCounts AS counts, "
        "LastCount AS ln, LastSum AS ls, LastCounts AS lc, InnerCount AS inn, "
        "InnerSum AS ins, InnerCounts AS inc, Low AS lo, High AS hi "
        f"FROM {rollup} {rolled_where}"
    )
    columns = ("Count", "Sum", "ExplicitBounds", "BucketCounts", "Count", "Sum", "BucketCounts")
    last = ", ".join(f"argMax({col}, TimeUnix)" for col in columns)
    baseline = (
        f"SELECT cityHash64({STREAM}, toInt32(2)), max({T}), toUInt8(0), toInt32(2), {last}, "
        "toInt64(0), toFloat64(0), CAST([] AS Array(Int64)), NULL, NULL "
        f"FROM {raw} WHERE {before} AND AggregationTemporality = 2 GROUP BY {STREAM}"
    )
    names = "ServiceName AS sn, Attributes AS at, ResourceAttributes AS ra"
    identity = (
        "SELECT sid, any(sn) AS sn, any(at) AS at, any(ra) AS ra FROM ("
        f"SELECT Sid AS sid, {names} FROM {rollup} {rolled_where} "
        f"UNION ALL SELECT {SID}, {names} FROM {raw} {raw_where}) GROUP BY sid"
    )
    return f"{rolled} UNION ALL {points} UNION ALL {baseline}", identity


MAX_RUNS = 64
"""Most runs of verified minutes a query reads from the rollup (the longest ones): the
rest are read raw, which gives the same answer, so the SQL stays short."""


def minute_runs(minutes: list[int]) -> list[tuple[int, int]]:
    """Sorted minute numbers as ``[first, end)`` runs of consecutive minutes, at most
    :data:`MAX_RUNS` (the longest), in time order."""
    runs: list[tuple[int, int]] = []
    for minute in sorted(minutes):
        if runs and runs[-1][1] == minute:
            runs[-1] = (runs[-1][0], minute + 1)
        else:
            runs.append((minute, minute + 1))
    if len(runs) > MAX_RUNS:
        runs = sorted(sorted(runs, key=lambda r: r[0] - r[1])[:MAX_RUNS])
    return runs


def uncovered(span: tuple[int, int], runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ``[lo, hi)`` nanosecond ranges of ``span`` (``until`` included) that no run
    covers."""
    gaps, at = [], span[0]
    for lo, hi in runs:
        if lo > at:
            gaps.append((at, lo))
        at = max(at, hi)
    if at <= span[1]:
        gaps.append((at, span[1] + 1))
    return gaps


def _any_range(column: str, ranges: list[tuple[int, int]], convert: str) -> str:
    """``column`` inside any of the ``[lo, hi)`` ``ranges``, each bound ``convert``-ed
    from an integer (numbers this module made: never text a client sent)."""
    if not ranges:
        return "0"
    inside = [
        f"({column} >= {convert}(toInt64({int(lo)})) AND {column} < {convert}(toInt64({int(hi)})))"
        for lo, hi in ranges
    ]
    return "(" + " OR ".join(inside) + ")"


def paired_segments(source: str) -> str:
    """Each segment with the last point of the segment before it in its stream, and its
    own increases: ``n``, ``s``, ``c`` (its first point paired, plus its inner sums)."""
    lagged = (
        "SELECT *, row_number() OVER w AS rn, lagInFrame(ln) OVER w AS pn, "
        "lagInFrame(ls) OVER w AS ps, lagInFrame(bounds) OVER w AS pb, "
        f"lagInFrame(lc) OVER w AS pc FROM ({source}) WINDOW w AS (PARTITION BY sid {_LAG_WINDOW})"
    )
    return (
        f"SELECT *, {PAIRED} AS d, {INCREASE_N} + inn AS n, {INCREASE_S} + ins AS s, "
        f"if(empty(inc), {INCREASE_C} AS c1, arrayMap((x, y) -> x + y, c1, inc)) AS c "
        f"FROM ({lagged})"
    )
