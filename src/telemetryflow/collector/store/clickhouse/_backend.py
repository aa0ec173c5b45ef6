"""The ClickHouse store: the exporter's tables written and read behind the collector's backend.

It builds rows in the exporter's shapes (``_write.py``; metric points by the metric
side, ``_metrics_write.py``), hands them to one writer thread (``_writer.py``), and
answers every query with SQL run in the database (``_traces.py``, ``_logs.py``,
``_captures.py``, ``_metrics_read.py``). A query past the gate's deadline is stopped by
the engine (``max_execution_time``) and answered 422 like the SQLite store's.

Only what is missing is created; a user that may not create it runs the store read-only
(``docs/scale.md``): writes refused naming why, reads of our missing tables empty.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.ingest._errors_events import otlp_captures
from telemetryflow.collector.store._writes import OverloadedError, WriteResult
from telemetryflow.collector.store.clickhouse import _captures, _logs, _metrics_read, _traces
from telemetryflow.collector.store.clickhouse._ddl import (
    ERRORS_TABLE,
    EVENTS_TABLE,
    IDEMPOTENCY_TABLE,
    ROLLUP_TABLE,
    tables_ddl,
)
from telemetryflow.collector.store.clickhouse._flags import flag_evaluations
from telemetryflow.collector.store.clickhouse._log_time import (
    log_columns,
    second_args,
    second_bounds,
)
from telemetryflow.collector.store.clickhouse._metrics_ddl import metric_tables_ddl
from telemetryflow.collector.store.clickhouse._metrics_write import (
    api_metric_rows,
    metric_rows,
    metric_time_columns,
)
from telemetryflow.collector.store.clickhouse._roller import Roller
from telemetryflow.collector.store.clickhouse._seam import ClickHouseConnection
from telemetryflow.collector.store.clickhouse._tables import Tables, project_clause
from telemetryflow.collector.store.clickhouse._write import (
    LOG_COLUMNS,
    SPAN_COLUMNS,
    log_rows,
    span_rows,
)
from telemetryflow.collector.store.clickhouse._writer import (
    ChBatch,
    StoreReadOnlyError,
    Writer,
    refuses_writes,
)

__all__ = ["METRIC_TABLES", "ClickHouseBackend", "ReadTroubleError"]

_log = logging.getLogger("telemetryflow.collector")
METRIC_TABLES = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
_OURS = (ERRORS_TABLE, EVENTS_TABLE, IDEMPOTENCY_TABLE)
_TIMEOUT_CODES = ("TIMEOUT_EXCEEDED", "Code: 159")


class ReadTroubleError(OverloadedError):
    """ClickHouse could not answer (down, unreachable): ``503`` with a retry hint."""

    def __init__(self, retry_after: float = 2.0) -> None:
        super().__init__(retry_after)
        self.args = ("the collector cannot read its ClickHouse store; retry later",)


class _NoRows:
    """A connection to tables that do not exist: every query answers no rows.

    A read-only store may lack our own tables; their listings run as usual (their
    parameters checked alike) over this, and answer empty.
    """

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return []

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        raise StoreReadOnlyError()

    def insert(self, table: str, rows: Any) -> None:
        raise StoreReadOnlyError()

    def insert_lines(self, table: str, columns: Any, data: bytes) -> None:
        raise StoreReadOnlyError()

    def warm(self, tables: Any) -> None:
        return None

    def close(self) -> None:
        return None


_NO_ROWS = _NoRows()


class ClickHouseBackend:
    """Writes and queries over one ClickHouse connection (chDB or a server)."""

    kind = "clickhouse"

    def __init__(
        self,
        ch: ClickHouseConnection,
        tables: Tables,
        *,
        max_pending: int = 256,
        retention_seconds: float = 0.0,
        deadline: float = 30.0,
    ) -> None:
        self.ch = ch
        self.tables = tables
        self.retention_seconds = retention_seconds
        self.deadline = deadline
        self.read_only = not self._create_missing()
        """The user may not create what is missing: writes are refused (``503``), reads
        of our missing tables answer empty, the exporter's tables are read as usual."""
        existing = self._existing_tables()
        self._empty = frozenset(_OURS) - existing
        """Our own tables that do not exist (a read-only store): listed as empty."""
        self.metric_tables = tuple(t for t in METRIC_TABLES if getattr(tables, t) in existing)
        self.time_columns = metric_time_columns(ch, tables)
        """How each metric table's times are written (its column types, learned once)."""
        self.source = _traces.TraceSource(
            ch, tables, trace_index=f"{tables.traces}_trace_id_ts" in existing
        )
        lookups = [tables.traces] + (
            [f"{tables.traces}_trace_id_ts"] if self.source.trace_index else []
        )
        self.warming = threading.Thread(
            target=ch.warm,
            args=([tables.qualified(name) for name in lookups],),
            name="telemetryflow-clickhouse-warm",
            daemon=True,
        )
        """Loads the trace tables' marks once, beside the first requests (``ch.warm``)."""
        self.warming.start()
        self._writer = Writer(ch, tables, self._qualified, max_pending)
        self.rollup = ROLLUP_TABLE in existing and tables.histogram in existing
        """Explicit histograms are rolled up per minute (``_rollup_sql.py``): metric
        queries read the minutes the rollup verifiably holds from it."""
        self.roller: Roller | None = None
        """Rolls closed minutes up; only when this store may write."""
        if self.rollup and not self.read_only:
            self.roller = Roller(ch, tables, retention_s=retention_seconds)
            self.roller.start()

    def _create_missing(self) -> bool:
        """Create the database and tables that are missing, only those (a user that may
        only read starts where everything exists); ``False`` when that user may not."""
        existing = frozenset(self._existing_tables())
        has_database = bool(
            self.ch.query(
                "SELECT name FROM system.databases WHERE name = {db:String}",
                {"db": self.tables.database},
            )
        )
        statements = tables_ddl(self.tables, existing, has_database)
        statements += metric_tables_ddl(self.tables, existing)
        for statement in statements:
            try:
                self.ch.command(statement)
            except Exception as exc:  # the engine's errors have no common type
                if not refuses_writes(exc):
                    raise
                _log.warning(
                    "the ClickHouse store is read-only: its user may not create the missing "
                    "tables (%s); writes are answered 503, the existing tables are read",
                    str(exc).splitlines()[0][:300],
                )
                return False
        return True

    def _existing_tables(self) -> set[str]:
        rows = self.ch.query(
            "SELECT name FROM system.tables WHERE database = {db:String}",
            {"db": self.tables.database},
        )
        return {row[0] for row in rows}

    def _qualified(self, key: str) -> str:
        """A batch key (a :class:`Tables` field, or one of our tables) as a table name."""
        name = key if key in _OURS else getattr(self.tables, key)
        return self.tables.qualified(name)

    # -- writes ------------------------------------------------------------------------
    def rows(
        self, signal: str, request: Any, project: str, received_ns: int
    ) -> tuple[ChBatch | None, int, str]:
        """The batch to store for an OTLP request (``None`` when empty), refused, why."""
        batch = ChBatch()
        if signal == "metrics":
            by_table: dict[str, list[dict[str, Any]]] = metric_rows(
                request, project, received_ns, self.time_columns
            )
            rejected, message = 0, ""
            for key, table_rows in by_table.items():
                if table_rows:
                    batch.rows[key] = table_rows
                    batch.stored += len(table_rows)
        else:
            traces = signal == "traces"
            parsed = (span_rows if traces else log_rows)(request, project, received_ns)
            rejected, message = parsed.rejected, parsed.message
            if parsed.lines:
                columns = SPAN_COLUMNS if traces else LOG_COLUMNS
                batch.lines["traces" if traces else "logs"] = (columns, parsed.lines)
                batch.stored = len(parsed.lines)
            errors, events = otlp_captures(signal, request, project, received_ns)
            self._add_captures(batch, errors, events)
        return (batch if batch.rows or batch.lines else None), rejected, message

    @staticmethod
    def _add_captures(batch: ChBatch, errors: list[Any], events: list[Any]) -> None:
        if errors:
            batch.rows[ERRORS_TABLE] = _captures.error_dicts(errors)
        if events:
            batch.rows[EVENTS_TABLE] = _captures.event_dicts(events)

    def captures_batch(self, errors: list[Any], events: list[Any]) -> ChBatch:
        """A batch of REST-captured errors and events (rows as ``_errors_events`` builds)."""
        batch = ChBatch()
        self._add_captures(batch, errors, events)
        return batch

    def points_batch(
        self, rows: list[Any], idempotency: tuple[str, str, dict[str, Any]] | None = None
    ) -> ChBatch:
        """A batch of 001 report/batch points (SQLite point rows, converted by the metric side)."""
        by_table: dict[str, list[dict[str, Any]]] = api_metric_rows(rows, self.time_columns)
        batch = ChBatch(stored=len(rows), idempotency=idempotency)
        batch.rows.update({key: found for key, found in by_table.items() if found})
        return batch

    def submit(self, batch: ChBatch, timeout: float = 30.0) -> WriteResult:
        """Store ``batch``; raises :class:`StoreReadOnlyError` when the user may not write."""
        if self.read_only:
            raise StoreReadOnlyError()
        return self._writer.submit(batch, timeout)

    async def submit_async(self, batch: ChBatch, timeout: float = 30.0) -> WriteResult:
        if self.read_only:
            raise StoreReadOnlyError()
        return await self._writer.submit_async(batch, timeout)

    def _captures_on(self, table: str) -> ClickHouseConnection:
        """The connection a listing of ``table`` runs on: none holds rows when it is missing."""
        return _NO_ROWS if table in self._empty else self.ch

    # -- reads -------------------------------------------------------------------------
    def _read(self, what: str, run: Any) -> Any:
        """Run a read; engine trouble → 503, the deadline → 422 naming what to narrow."""
        try:
            return run()
        except (BadRequestError, OverloadedError):
            raise
        except Exception as exc:  # the engine's errors have no common type
            text = str(exc)
            if any(code in text for code in _TIMEOUT_CODES):
                raise BadRequestError(
                    422,
                    f"the query ran past {self.deadline:g} s; narrow its time range "
                    "(since/until) or add filters",
                ) from None
            if "Code: " in text and "UNKNOWN_TABLE" not in text:
                _log.warning("ClickHouse refused a %s query: %s", what, text.splitlines()[0][:300])
                raise BadRequestError(400, f"ClickHouse refused the {what} query") from None
            raise ReadTroubleError() from exc

    def query(
        self,
        signal: str,
        project: str,
        params: Mapping[str, Any],
        limits: Any,
        gate: Any = None,
    ) -> Any:
        """Answer ``logs``, ``traces``, ``metrics`` or ``metric_names`` for ``project``.

        The deadline is the engine's ``max_execution_time``, set on the connection from
        the same setting as the gate's (``query_timeout``).
        """
        if signal == "traces":
            return self._read(signal, lambda: _traces.query_traces(self.source, project, params))
        if signal == "logs":
            return self._read(
                signal, lambda: _logs.query_logs(self.ch, self.tables, project, params)
            )
        # no metric table at all (a read-only store beside an exporter without metrics):
        # the metric queries answer empty
        ch = self.ch if self.metric_tables else _NO_ROWS
        if signal == "metrics":
            return self._read(
                signal,
                lambda: _metrics_read.query_metrics(
                    ch, self.tables, project, params, limits, rollup=self.rollup
                ),
            )
        return self._read(
            signal,
            lambda: _metrics_read.query_metric_names(
                ch, self.tables, project, params, self.retention_seconds
            ),
        )

    def status_counts(self, project: str, since_ns: int) -> tuple[dict[str, int], int]:
        """Spans, metric points and logs of ``project`` since ``since_ns``; the newest time.

        The exporter's rows carry no receive time: this counts by the data's own time
        (the logs' also in whole seconds where the table has them: ``_log_time.py``).
        """
        args = {"since": since_ns, "project": project,
                "default_project": self.tables.default_project,
                **second_args(since_ns)}  # fmt: skip
        columns = self._read("status", lambda: log_columns(self.ch, self.tables))
        since = "Timestamp >= fromUnixTimestamp64Nano({since:Int64})"
        where = f"PREWHERE {since} WHERE {project_clause()}"
        log_where = " AND ".join([since, *second_bounds(columns, until=False)])
        parts = [
            f"SELECT 'spans', count(), max(toUnixTimestamp64Nano(Timestamp)) "  # noqa: S608
            f"FROM {self._qualified('traces')} {where}",
            f"SELECT 'logs', count(), max(toUnixTimestamp64Nano(Timestamp)) "  # noqa: S608
            f"FROM {self._qualified('logs')} PREWHERE {log_where} WHERE {project_clause()}",
        ]
        metric_time = "toDateTime64(TimeUnix, 9)"
        metric_where = (
            f"PREWHERE {metric_time} >= fromUnixTimestamp64Nano({{since:Int64}}) "
            f"WHERE {project_clause()}"
        )
        parts += [
            f"SELECT 'metric_points', count(), max(toUnixTimestamp64Nano({metric_time})) "  # noqa: S608
            f"FROM {self._qualified(table)} {metric_where}"
            for table in self.metric_tables
        ]
        rows = self._read("status", lambda: self.ch.query(" UNION ALL ".join(parts), args))
        received = {"spans": 0, "metric_points": 0, "logs": 0}
        last = 0
        for label, count, newest in rows:
            received[label] += int(count)
            if count:
                last = max(last, int(newest))
        return received, last

    def error_groups(self, project: str, params: Mapping[str, Any]) -> dict[str, Any]:
        ch = self._captures_on(ERRORS_TABLE)
        return dict(
            self._read(
                "errors", lambda: _captures.list_error_groups(ch, self.tables, project, params)
            )
        )

    def find_error(self, project: str, error_id: str) -> dict[str, Any] | None:
        ch = self._captures_on(ERRORS_TABLE)
        found: dict[str, Any] | None = self._read(
            "errors", lambda: _captures.find_error(ch, self.tables, project, error_id)
        )
        return found

    def event_counts(self, project: str, params: Mapping[str, Any]) -> dict[str, Any]:
        ch = self._captures_on(EVENTS_TABLE)
        return dict(
            self._read("events", lambda: _captures.list_events(ch, self.tables, project, params))
        )

    def flag_evaluations(
        self, project: str, params: Mapping[str, Any], gate: Any = None
    ) -> dict[str, Any]:
        return dict(
            self._read("flags", lambda: flag_evaluations(self.ch, self.tables, project, params))
        )

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, stop rolling, then release the engine."""
        if self.roller is not None:
            self.roller.close(timeout)
        self._writer.close(timeout)
        self.warming.join(timeout)
        started = time.monotonic()
        try:
            self.ch.close()
        except Exception:  # closing a broken connection: nothing left to save
            _log.debug("closing ClickHouse took %.1f s and failed", time.monotonic() - started)
