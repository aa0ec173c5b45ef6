"""A time window on the exporter's logs table that its partitions and primary key can use.

The exporter's current logs table is partitioned by the day of ``TimestampTime``
(``toDateTime(Timestamp)``: whole seconds) and ordered by ``(ServiceName,
TimestampTime, Timestamp)``. A condition on ``Timestamp`` alone prunes neither its
partitions nor its granules: an hour's window reads every part. So every windowed
logs query states its window twice: on ``Timestamp`` (exact, to the nanosecond) and
on ``TimestampTime``, widened outward to whole seconds (the start's second rounded
down, the end's rounded up: a record inside the window is never left out) and kept
inside the ``DateTime`` range (1970 to 2106: a second past either end would wrap
around). Older logs tables have no ``TimestampTime`` (their keys are derived from
``Timestamp``, which prunes by itself): which columns a table has is asked of
``system.columns`` by :func:`log_columns`, and the second bound left out without it.
"""

from __future__ import annotations

from telemetryflow.collector.store.clickhouse._seam import ClickHouseConnection
from telemetryflow.collector.store.clickhouse._tables import Tables

__all__ = ["SECONDS", "log_columns", "second_args", "second_bounds"]

SECONDS = "TimestampTime"
"""The logs table's whole-second time column, its primary key's after the service."""
_NS = 1_000_000_000
_LAST_SECOND = 2**32 - 1


def log_columns(ch: ClickHouseConnection, tables: Tables) -> frozenset[str]:
    """Which of the columns that differ between the exporter's generations the logs table
    has: ``EventName`` (a log record's event name, newer tables) and ``TimestampTime``
    (the seconds the table's primary key orders by; older tables order by ``Timestamp``)."""
    rows = ch.query(
        "SELECT name FROM system.columns WHERE database = {db:String} "
        "AND table = {logs:String} AND name IN ('EventName', 'TimestampTime')",
        {"db": tables.database, "logs": tables.logs},
    )
    return frozenset(str(row[0]) for row in rows)


def _clamped(seconds: int) -> int:
    return min(max(seconds, 0), _LAST_SECOND)


def second_args(since: int, until: int | None = None) -> dict[str, int]:
    """The parameters of :func:`second_bounds` for a window of Unix nanoseconds:
    ``since_s`` the start's second rounded down, ``until_s`` the end's rounded up."""
    args = {"since_s": _clamped(since // _NS)}
    if until is not None:
        args["until_s"] = _clamped(-(-until // _NS))
    return args


def second_bounds(columns: frozenset[str], until: bool = True) -> list[str]:
    """The window on ``TimestampTime`` (from ``since_s``, to ``until_s`` when ``until``)
    when the logs table has that column (``columns`` from :func:`log_columns`), else none."""
    if SECONDS not in columns:
        return []
    bounds = [f"{SECONDS} >= toDateTime({{since_s:UInt32}})"]
    if until:
        bounds.append(f"{SECONDS} <= toDateTime({{until_s:UInt32}})")
    return bounds
