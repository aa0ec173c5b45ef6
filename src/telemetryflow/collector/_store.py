"""SQLite storage: one writer thread with group commit, a pool of readers, retention.

Every write request becomes a :class:`WriteBatch` handed to the writer thread. The
writer commits whatever batches are waiting in one transaction and only then wakes
their requests, so a request is acknowledged only after its rows are in the WAL: a
killed collector loses nothing it acknowledged. The queue is bounded; when it is
full :meth:`Store.submit` raises :class:`OverloadedError` and the caller answers
``429``/``UNAVAILABLE`` instead of accepting data it might drop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from telemetryflow.collector._schema import (
    LOG_COLUMNS,
    POINT_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    SPAN_COLUMNS,
    add_metric_columns,
)

__all__ = ["OverloadedError", "Store", "StoreClosedError", "WriteBatch", "WriteResult"]

_log = logging.getLogger("telemetryflow.collector")

Row = tuple[Any, ...]
_GROUP_MAX = 64
_IDEMPOTENCY_TTL_NS = 24 * 3600 * 10**9
# (table, time column) in the order retention trims them.
_TIMED_TABLES = (("spans", "start_ns"), ("logs", "time_ns"), ("metric_points", "time_ns"))


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608


_INSERT_SPANS = _insert_sql("spans", SPAN_COLUMNS)
_INSERT_LOGS = _insert_sql("logs", LOG_COLUMNS)
_INSERT_POINTS = _insert_sql("metric_points", POINT_COLUMNS)


class OverloadedError(Exception):
    """The write queue is full; retry after :attr:`retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("the collector is overloaded")
        self.retry_after = retry_after


class StoreClosedError(Exception):
    """The store is shutting down and takes no more writes."""


@dataclass
class WriteBatch:
    """Rows from one request, plus an optional idempotency key and its answer."""

    spans: list[Row] = field(default_factory=list)
    logs: list[Row] = field(default_factory=list)
    points: list[Row] = field(default_factory=list)
    idempotency: tuple[str, str, dict[str, Any]] | None = None
    """``(project, key, result)``: stored once; a repeat stores nothing."""


@dataclass(frozen=True)
class WriteResult:
    """What the writer did with a batch. ``previous`` is set for a repeated key."""

    stored: int
    previous: dict[str, Any] | None = None


class _Job:
    __slots__ = ("batch", "done", "error", "result")

    def __init__(self, batch: WriteBatch) -> None:
        self.batch = batch
        self.done = threading.Event()
        self.result: WriteResult | None = None
        self.error: BaseException | None = None


class Store:
    """The embedded database. Thread-safe; create one per collector."""

    def __init__(
        self,
        path: str,
        *,
        sync_full: bool = False,
        max_pending: int = 256,
        retention_seconds: float = 0.0,
        max_db_bytes: int = 0,
        retention_interval: float = 60.0,
    ) -> None:
        self.path = path
        self._sync = "FULL" if sync_full else "NORMAL"
        self.retention_seconds = retention_seconds
        self.max_db_bytes = max_db_bytes
        self._retention_interval = retention_interval
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_pending)
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._write_lock = threading.RLock()  # guards the writer connection
        self._writer = self._connect()
        self._init_schema()
        self._thread = threading.Thread(target=self._run, name="tf-collector-writer", daemon=True)
        self._thread.start()

    # -- connections -----------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                               check_same_thread=False)  # fmt: skip
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._sync}")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _init_schema(self) -> None:
        conn = self._writer
        fresh = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        if fresh:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("VACUUM")  # auto_vacuum only takes effect on an empty file this way
        conn.execute("PRAGMA journal_size_limit=67108864")
        conn.executescript(SCHEMA)
        add_metric_columns(conn)
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )

    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """Borrow a read connection (WAL readers never block the writer)."""
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
        try:
            yield conn
        finally:
            if self._closed:
                conn.close()
            else:
                self._readers.put(conn)

    # -- writes ----------------------------------------------------------------------
    def submit(self, batch: WriteBatch, timeout: float = 30.0) -> WriteResult:
        """Store ``batch`` durably and return once it is committed.

        Raises:
            OverloadedError: too many writes are waiting; nothing was stored.
            StoreClosedError: the store is closing; nothing was stored.
            TimeoutError: the commit did not finish in time (it may still land).
        """
        if self._closed:
            raise StoreClosedError("the collector is shutting down")
        job = _Job(batch)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise OverloadedError(retry_after=1.0) from None
        deadline = time.monotonic() + timeout
        while not job.done.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
            if not self._thread.is_alive():  # queued behind the stop signal: never stored
                raise StoreClosedError("the collector is shutting down")
            if time.monotonic() >= deadline:
                raise TimeoutError("the database did not commit in time")
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _run(self) -> None:
        next_retention = time.monotonic() + min(5.0, self._retention_interval)
        while True:
            if time.monotonic() >= next_retention and not self._closed:
                self._safe_retention()
                next_retention = time.monotonic() + self._retention_interval
            try:
                job = self._queue.get(timeout=max(0.0, next_retention - time.monotonic()))
            except queue.Empty:
                continue
            stop = job is None
            jobs = [] if job is None else [job]
            while len(jobs) < _GROUP_MAX or stop:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is not None:
                    jobs.append(more)
            if jobs:
                self._commit_group(jobs)
            if stop:
                return

    def _commit_group(self, jobs: list[_Job]) -> None:
        with self._write_lock:
            self._commit_locked(jobs)

    def _commit_locked(self, jobs: list[_Job]) -> None:
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = [self._apply(conn, job.batch) for job in jobs]
            conn.execute("COMMIT")
        except Exception:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if len(jobs) > 1:  # isolate the batch that failed
                for job in jobs:
                    self._commit_locked([job])
                return
            _log.exception("could not store a batch")
            jobs[0].error = RuntimeError("the database rejected the write")
            jobs[0].done.set()
            return
        for job, result in zip(jobs, results, strict=True):
            job.result = result
            job.done.set()

    @staticmethod
    def _apply(conn: sqlite3.Connection, batch: WriteBatch) -> WriteResult:
        if batch.idempotency is not None:
            project, key, answer = batch.idempotency
            cur = conn.execute(
                "INSERT OR IGNORE INTO idempotency (project, key, created_ns, result) "
                "VALUES (?, ?, ?, ?)",
                (project, key, time.time_ns(), json.dumps(answer)),
            )
            if cur.rowcount == 0:
                row = conn.execute(
                    "SELECT result FROM idempotency WHERE project = ? AND key = ?",
                    (project, key),
                ).fetchone()
                return WriteResult(0, previous=json.loads(row[0]))
        if batch.spans:
            conn.executemany(_INSERT_SPANS, batch.spans)
        if batch.logs:
            conn.executemany(_INSERT_LOGS, batch.logs)
        if batch.points:
            conn.executemany(_INSERT_POINTS, batch.points)
        return WriteResult(len(batch.spans) + len(batch.logs) + len(batch.points))

    # -- retention -------------------------------------------------------------------
    def _safe_retention(self) -> None:
        try:
            self.apply_retention()
        except sqlite3.Error:
            _log.exception("retention pass failed")

    def live_bytes(self) -> int:
        """Bytes of the database holding data (excluding free pages)."""
        with self._write_lock:
            conn = self._writer
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def apply_retention(self, now_ns: int | None = None) -> int:
        """Delete data past the age limit, then the oldest data past the size limit.

        Runs on the writer thread periodically; tests may call it directly. Returns
        the number of rows deleted.
        """
        with self._write_lock:
            return self._retention_locked(time.time_ns() if now_ns is None else now_ns)

    def _retention_locked(self, now: int) -> int:
        deleted = 0
        conn = self._writer
        if self.retention_seconds > 0:
            cutoff = now - int(self.retention_seconds * 1e9)
            for table, column in _TIMED_TABLES:
                cur = conn.execute(f"DELETE FROM {table} WHERE {column} < ?", (cutoff,))  # noqa: S608
                deleted += cur.rowcount
        conn.execute("DELETE FROM idempotency WHERE created_ns < ?", (now - _IDEMPOTENCY_TTL_NS,))
        if self.max_db_bytes > 0:
            deleted += self._trim_to_size()
        conn.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page only
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # after the vacuum: shrinks the file
        return deleted

    def _trim_to_size(self) -> int:
        conn = self._writer
        deleted = 0
        for _ in range(200):
            if self.live_bytes() <= self.max_db_bytes:
                break
            removed = 0
            for table, column in _TIMED_TABLES:
                total = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
                chunk = max(100, total // 20)
                cur = conn.execute(
                    f"DELETE FROM {table} WHERE id IN "  # noqa: S608
                    f"(SELECT id FROM {table} ORDER BY {column} LIMIT ?)",
                    (chunk,),
                )
                removed += cur.rowcount
            deleted += removed
            if removed == 0:
                break
        return deleted

    # -- lifecycle -------------------------------------------------------------------
    def close(self, timeout: float = 30.0) -> None:
        """Commit everything queued, then close. Safe to call twice."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        with contextlib.suppress(sqlite3.Error):
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._writer.close()
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break
