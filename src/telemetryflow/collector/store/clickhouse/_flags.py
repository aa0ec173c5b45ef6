"""Feature flag evaluations per flag and user over ``otel_logs``, as the SQLite store counts.

The same answer as ``query/_flags.py``, grouped by the database: the window (also in
whole seconds on ``TimestampTime`` where the table has it: ``_log_time.py``), the body
and the service go in ``PREWHERE``, the project and the flag key (map access on
``LogAttributes``) in ``WHERE``, ``count()`` per (flag, user) and ``argMax`` for the
newest evaluation's answer. Attribute values are text here, as the exporter stores
every attribute (a boolean flag value reads ``"true"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from telemetryflow.collector.query._flags import FLAG_EVENT, MAX_FLAG_ROWS, flag_row, flag_window
from telemetryflow.collector.store.clickhouse._log_time import (
    log_columns,
    second_args,
    second_bounds,
)
from telemetryflow.collector.store.clickhouse._seam import ClickHouseConnection
from telemetryflow.collector.store.clickhouse._tables import Tables, project_clause

__all__ = ["flag_evaluations"]

_OPTIONAL = ("feature_flag.result.variant", "feature_flag.result.value",
             "feature_flag.result.reason")  # fmt: skip
_LATEST = ", ".join(
    f"LogAttributes['{key}'], mapContains(LogAttributes, '{key}')" for key in _OPTIONAL
)


def flag_evaluations(
    ch: ClickHouseConnection, tables: Tables, project: str, raw: Mapping[str, Any]
) -> dict[str, Any]:
    """Per (flag, user): evaluations in the window and the latest one's answer."""
    since, until, service = flag_window(project, raw)
    where = [
        "Timestamp >= fromUnixTimestamp64Nano({since:Int64})",
        "Timestamp <= fromUnixTimestamp64Nano({until:Int64})",
        *second_bounds(log_columns(ch, tables)),
        "Body = {body:String}",
    ]
    args: dict[str, Any] = {
        "since": since, "until": until, "body": FLAG_EVENT, "project": project,
        "default_project": tables.default_project, **second_args(since, until),
    }  # fmt: skip
    if service is not None:
        where.append("ServiceName = {service:String}")
        args["service"] = service
    sql = (
        "SELECT LogAttributes['feature_flag.key'] AS flag, "  # noqa: S608
        "LogAttributes['feature_flag.context.id'] AS user, count(), "
        f"argMax(tuple({_LATEST}, ServiceName, toUnixTimestamp64Nano(Timestamp), TraceId), "
        f"Timestamp) FROM {tables.qualified(tables.logs)} "
        f"PREWHERE {' AND '.join(where)} "
        f"WHERE {project_clause()} AND mapContains(LogAttributes, 'feature_flag.key') "
        f"GROUP BY flag, user ORDER BY flag, user LIMIT {MAX_FLAG_ROWS + 1:d}"
    )
    rows = ch.query(sql, args)
    flags = []
    for flag, user, count, latest in rows[:MAX_FLAG_ROWS]:
        variant, has_variant, value, has_value, reason, has_reason, *rest = latest
        answer = (
            variant if has_variant else None,
            value if has_value else None,
            reason if has_reason else None,
            rest[0],
            int(rest[1]),
            rest[2],
        )
        flags.append(flag_row(flag, user, int(count), answer))
    return {"flags": flags, "truncated": len(rows) > MAX_FLAG_ROWS}
