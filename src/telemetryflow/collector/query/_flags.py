"""Feature flag evaluations counted per flag and user, by the database, for the events page.

The SDK records each evaluation as a ``feature_flag.evaluation`` log record (its body
and event name) with the ``feature_flag.*`` attributes of the OpenTelemetry
conventions. The page shows, per flag and user (``feature_flag.context.id``), how many
evaluations the window holds and what the latest one answered (variant, value,
reason, service, time, trace). SQLite groups them here, with JSON extraction over the
stored attributes, in one pass: the columns beside ``max(time_ns)`` are, as SQLite
defines for a bare column next to ``max()``, those of the newest record (two records
of one pair in the same nanosecond: either). That is a third of the time of ranking
every record with a window function, which sorts them all. ClickHouse groups them in
``store/clickhouse/_flags.py``, with map access. Every
evaluation in the window is counted; at most :data:`MAX_FLAG_ROWS` (flag, user) pairs
are listed, ``truncated`` saying when there were more.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from telemetryflow.collector.query._params import Params, iso

__all__ = ["FLAG_EVENT", "MAX_FLAG_ROWS", "flag_evaluations", "flag_row", "flag_window"]

FLAG_EVENT = "feature_flag.evaluation"
"""Body (and event name) of the SDK's flag evaluation records."""
MAX_FLAG_ROWS = 1000
"""(flag, user) pairs listed at most, first by flag then user."""
_PARAMS = ("service", "since", "until", "window")


def flag_window(project: str, raw: Mapping[str, Any]) -> tuple[int, int, str | None]:
    """``(since_ns, until_ns, service)`` of a request: the last 24 h unless told."""
    p = Params(raw, _PARAMS)
    since, until = p.time_range(("window",), "24h")
    return since, until, p.text("service")


def flag_row(flag: str, user: str, evaluations: int, latest: tuple[Any, ...]) -> dict[str, Any]:
    """One (flag, user) pair as the page shows it (either store).

    ``latest`` is ``(variant, value, reason, service, time_ns, trace_id)`` of the pair's
    newest evaluation; a missing attribute is ``None``.
    """
    variant, value, reason, service, time_ns, trace_id = latest
    return {
        "flag": flag, "user": user, "variant": variant, "value": value, "reason": reason,
        "service": service, "time": iso(time_ns), "trace_id": trace_id or None,
        "evaluations": evaluations,
    }  # fmt: skip


def _path(key: str) -> str:
    return f'$."{key}"'


_KEY, _USER = _path("feature_flag.key"), _path("feature_flag.context.id")
_VARIANT, _VALUE = _path("feature_flag.result.variant"), _path("feature_flag.result.value")
_REASON = _path("feature_flag.result.reason")
_SQL = f"""
SELECT json_extract(t.attributes, '{_KEY}') AS flag,
       coalesce(CAST(json_extract(t.attributes, '{_USER}') AS TEXT), '') AS user, count(*),
       json_extract(t.attributes, '{_VARIANT}'), json_type(t.attributes, '{_VALUE}'),
       json_extract(t.attributes, '{_VALUE}'), json_extract(t.attributes, '{_REASON}'),
       t.service, max(t.time_ns), t.trace_id
FROM logs t
WHERE t.time_ns >= ? AND t.time_ns <= ? AND +t.project = ? AND t.body = ? {{service}}
  AND json_type(t.attributes, '{_KEY}') = 'text'
GROUP BY flag, user ORDER BY flag, user LIMIT ?
"""  # noqa: S608 - fixed text; the values are parameters


def _value(kind: str | None, value: Any) -> Any:
    """An attribute value back as the SDK sent it (JSON ``true`` is not the number 1)."""
    if kind == "true":
        return True
    if kind == "false":
        return False
    if kind in ("object", "array"):
        return json.loads(value)
    return value


def flag_evaluations(
    conn: sqlite3.Connection, project: str, raw: Mapping[str, Any]
) -> dict[str, Any]:
    """Per (flag, user): evaluations in the window and the latest one's answer."""
    since, until, service = flag_window(project, raw)
    args: list[Any] = [since, until, project, FLAG_EVENT]
    if service is not None:
        args.append(service)
    sql = _SQL.replace("{service}", "AND t.service = ?" if service is not None else "")
    rows = conn.execute(sql, (*args, MAX_FLAG_ROWS + 1)).fetchall()
    flags = [
        flag_row(flag, user, count, (variant, _value(kind, value), reason, *latest))
        for flag, user, count, variant, kind, value, reason, *latest in rows[:MAX_FLAG_ROWS]
    ]
    return {"flags": flags, "truncated": len(rows) > MAX_FLAG_ROWS}
