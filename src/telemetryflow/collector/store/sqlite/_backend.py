"""The SQLite store behind the backend interface: today's store and queries, unchanged.

Rows are built by ``ingest/_otlp.py`` (resources and scopes deduplicated), stored by
:class:`Store`'s writer thread, and read by the ``query/`` modules on a pooled read
connection, bounded by the query gate's deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from telemetryflow.collector.ingest._errors_events import (
    find_error,
    list_error_groups,
    list_events,
    otlp_captures,
)
from telemetryflow.collector.ingest._exemplars import exemplar_rows
from telemetryflow.collector.ingest._otlp import log_rows, point_rows, span_rows
from telemetryflow.collector.query._flags import flag_evaluations
from telemetryflow.collector.query._gate import QueryGate, reading
from telemetryflow.collector.query._logs import query_logs
from telemetryflow.collector.query._metric_names import query_metric_names
from telemetryflow.collector.query._metrics import query_metrics
from telemetryflow.collector.query._traces import query_traces
from telemetryflow.collector.store._writes import WriteResult
from telemetryflow.collector.store.sqlite._store import Store, WriteBatch

__all__ = ["SqliteBackend"]


_ROWS = {"traces": (span_rows, "spans"), "metrics": (point_rows, "points"),
         "logs": (log_rows, "logs")}  # fmt: skip
_STATUS_TABLES = (("spans", "spans"), ("metric_points", "metric_points"), ("logs", "logs"))


class SqliteBackend:
    """The embedded SQLite file (:class:`Store`) as a backend."""

    kind = "sqlite"

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def retention_seconds(self) -> float:
        return self.store.retention_seconds

    def rows(
        self, signal: str, request: Any, project: str, received_ns: int
    ) -> tuple[WriteBatch | None, int, str]:
        make, table = _ROWS[signal]
        parsed = make(request, project, received_ns)
        # errors and product events the SDK captured, for the observability listings
        errors, events = (otlp_captures(signal, request, project, received_ns)
                          if parsed.captures else ([], []))  # fmt: skip
        # exemplars of metric points go in the same batch
        exemplars = exemplar_rows(request, project, received_ns) if parsed.exemplars else []
        batch = None
        if parsed.rows or errors or events:
            batch = WriteBatch(resources=parsed.resources, scopes=parsed.scopes,
                               errors=errors, events=events, exemplars=exemplars)  # fmt: skip
            getattr(batch, table).extend(parsed.rows)
        return batch, parsed.rejected, parsed.message

    def captures_batch(self, errors: list[Any], events: list[Any]) -> WriteBatch:
        return WriteBatch(errors=errors, events=events)

    def points_batch(
        self, rows: list[Any], idempotency: tuple[str, str, dict[str, Any]] | None = None
    ) -> WriteBatch:
        return WriteBatch(points=rows, idempotency=idempotency)

    def submit(self, batch: WriteBatch, timeout: float = 30.0) -> WriteResult:
        return self.store.submit(batch, timeout)

    async def submit_async(self, batch: WriteBatch, timeout: float = 30.0) -> WriteResult:
        return await self.store.submit_async(batch, timeout)

    def query(
        self, signal: str, project: str, params: Mapping[str, Any], limits: Any, gate: QueryGate
    ) -> Any:
        with reading(self.store) as conn, gate.bounded(conn):
            if signal == "metrics":
                return query_metrics(conn, project, params, limits)
            if signal == "metric_names":  # by default over the retention window
                return query_metric_names(conn, project, params, self.store.retention_seconds)
            if signal == "logs":
                return query_logs(conn, project, params)
            return query_traces(conn, project, params)

    def status_counts(self, project: str, since_ns: int) -> tuple[dict[str, int], int]:
        received: dict[str, int] = {}
        last = 0
        with reading(self.store) as conn:
            for label, table in _STATUS_TABLES:
                # by the collector's receive stamp: a client's clock cannot hide its data
                count, newest = conn.execute(
                    f"SELECT count(*), max(received_ns) FROM {table} "  # noqa: S608
                    "WHERE received_ns >= ? AND project = ?",
                    (since_ns, project),
                ).fetchone()
                received[label] = int(count)
                last = max(last, int(newest or 0))
        return received, last

    def error_groups(self, project: str, params: Mapping[str, Any]) -> dict[str, Any]:
        with reading(self.store) as conn:
            return list_error_groups(conn, project, params)

    def find_error(self, project: str, error_id: str) -> dict[str, Any] | None:
        with reading(self.store) as conn:
            return find_error(conn, project, error_id)

    def event_counts(self, project: str, params: Mapping[str, Any]) -> dict[str, Any]:
        with reading(self.store) as conn:
            return list_events(conn, project, params)

    def flag_evaluations(
        self, project: str, params: Mapping[str, Any], gate: QueryGate
    ) -> dict[str, Any]:
        with reading(self.store) as conn, gate.bounded(conn):
            return flag_evaluations(conn, project, params)

    def close(self, timeout: float = 30.0) -> None:
        self.store.close(timeout)
