"""SQLite storage: one writer thread with group commit, a pool of readers, retention.

Every write request becomes a :class:`WriteBatch` handed to the writer thread. The
writer commits whatever batches are waiting in one transaction and only then wakes
their requests, so a request is acknowledged only after its rows are in the WAL: a
killed collector loses nothing it acknowledged. A request waits on its thread
(:meth:`Store.submit`) or, without a thread, on an event loop
(:meth:`Store.submit_async`): the writer completes a future either way. The queue is
bounded; when it is full :meth:`Store.submit` raises :class:`OverloadedError` and the
caller answers ``503``/``UNAVAILABLE`` instead of accepting data it might drop.

When the disk is full (``SQLITE_FULL``) or the file cannot be written (I/O errors, a
lock held too long) the write raises :class:`StorageFullError`, an
:class:`OverloadedError`: the client is told to retry later and keeps its data, and
the next write that fits simply succeeds: nothing has to be restarted. Retention
(``_retention.py``) runs on the writer thread between commits.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from telemetryflow.collector.store._writes import (
    STORAGE_RETRY_S,
    StorageFullError,
    StoreClosedError,
    WriteJob,
    WriteResult,
    await_write,
    enqueue,
)
from telemetryflow.collector.store.sqlite._retention import Retention
from telemetryflow.collector.store.sqlite._schema import (
    ERROR_COLUMNS,
    EVENT_COLUMNS,
    EXEMPLAR_COLUMNS,
    LOG_COLUMNS,
    POINT_COLUMNS,
    RESOURCE_COLUMNS,
    SCHEMA_VERSION,
    SCOPE_COLUMNS,
    SPAN_COLUMNS,
    migrate,
)

__all__ = ["Store", "WriteBatch", "storage_trouble"]

_log = logging.getLogger("telemetryflow.collector")

Row = tuple[Any, ...]
_GROUP_MAX = 64
# SQLite primary result codes meaning the storage, not the data, is in trouble: BUSY,
# LOCKED (past the busy timeout), NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
_STORAGE_CODES = frozenset({5, 6, 7, 8, 10, 13, 14, 15})
# Python 3.10 has no ``sqlite_errorcode``: the same conditions by their messages.
_STORAGE_MESSAGES = (
    "database or disk is full", "disk i/o error", "database is locked", "out of memory",
    "unable to open database", "readonly database", "locking protocol",
)  # fmt: skip


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608


_INSERT_SPANS = _insert_sql("spans", SPAN_COLUMNS)
_INSERT_LOGS = _insert_sql("logs", LOG_COLUMNS)
_INSERT_POINTS = _insert_sql("metric_points", POINT_COLUMNS)
_INSERT_RESOURCES = _insert_sql("resources", RESOURCE_COLUMNS).replace("INSERT", "INSERT OR IGNORE")
_INSERT_SCOPES = _insert_sql("scopes", SCOPE_COLUMNS).replace("INSERT", "INSERT OR IGNORE")
# one capture arrives twice from the SDK (log record and span event): its error_id is unique
_INSERT_ERRORS = _insert_sql("error_occurrences", ERROR_COLUMNS).replace(
    "INSERT", "INSERT OR IGNORE"
)
_INSERT_EVENTS = _insert_sql("product_events", EVENT_COLUMNS)
_INSERT_EXEMPLARS = _insert_sql("metric_exemplars", EXEMPLAR_COLUMNS).replace(
    "INSERT", "INSERT OR IGNORE"
)


def storage_trouble(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite reporting a full or failing disk rather than bad data."""
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _STORAGE_CODES
    text = str(exc).lower()
    return any(message in text for message in _STORAGE_MESSAGES)


@dataclass
class WriteBatch:
    """Rows from one request, plus an optional idempotency key and its answer."""

    spans: list[Row] = field(default_factory=list)
    logs: list[Row] = field(default_factory=list)
    points: list[Row] = field(default_factory=list)
    resources: dict[int, Row] = field(default_factory=dict)
    """Resource rows the spans and logs refer to, by key (stored once, see ``ingest._otlp``)."""
    scopes: dict[int, Row] = field(default_factory=dict)
    errors: list[Row] = field(default_factory=list)
    """Error occurrences (``_errors_events``); a repeated ``error_id`` is stored once."""
    events: list[Row] = field(default_factory=list)
    """Product events (``_errors_events``)."""
    exemplars: list[Row] = field(default_factory=list)
    """Exemplars of the metric points (``_exemplars``); not counted as stored items."""
    idempotency: tuple[str, str, dict[str, Any]] | None = None
    """``(project, key, result)``: stored once; a repeat stores nothing."""


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
        self._retention_interval = retention_interval
        self._queue: queue.Queue[WriteJob[WriteBatch] | None] = queue.Queue(maxsize=max_pending)
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._write_lock = threading.RLock()  # guards the writer connection
        self._writer = self._connect()
        self._init_schema()
        self._retention = Retention(self._writer, retention_seconds, max_db_bytes)
        self._storage_failing = False  # set by the writer; read for logging only
        self._thread = threading.Thread(target=self._run, name="tf-collector-writer", daemon=True)
        self._thread.start()

    @property
    def retention_seconds(self) -> float:
        return self._retention.max_age_s

    @property
    def max_db_bytes(self) -> int:
        return self._retention.max_bytes

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
        before = migrate(conn)
        if 0 < before < SCHEMA_VERSION:
            _log.info("database upgraded from schema %d to %d", before, SCHEMA_VERSION)
        elif before > SCHEMA_VERSION:
            _log.warning("database written by a newer version (schema %d); opening it as %d",
                         before, SCHEMA_VERSION)  # fmt: skip

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
        future = self.submit_future(batch)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return future.result(min(0.5, max(0.0, deadline - time.monotonic())))
            except concurrent.futures.TimeoutError:
                pass
            if not self._thread.is_alive():  # queued behind the stop signal: never stored
                raise StoreClosedError("the collector is shutting down")
            if time.monotonic() >= deadline:
                future.cancel()
                raise TimeoutError("the database did not commit in time")

    async def submit_async(self, batch: WriteBatch, timeout: float = 30.0) -> WriteResult:
        """:meth:`submit` for a caller on an event loop: the loop waits, no thread does.

        Raises:
            The same as :meth:`submit`.
        """
        return await await_write(self.submit_future(batch), timeout)

    def submit_future(self, batch: WriteBatch) -> concurrent.futures.Future[WriteResult]:
        """Queue ``batch`` for the writer: the future completes once it is committed.

        Raises:
            OverloadedError: too many writes are waiting; nothing was stored.
            StoreClosedError: the store is closing; nothing was stored.
        """
        return enqueue(self._queue, batch, self._closed)

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
                if more is None:
                    stop = True  # close() asked while this group was gathered: finish it
                else:
                    jobs.append(more)
            if jobs and not self._commit_group(jobs):
                # a size trim may free pages: run it soon, not every failed write
                next_retention = min(next_retention, time.monotonic() + STORAGE_RETRY_S)
            if stop:
                return

    def _commit_group(self, jobs: list[WriteJob[WriteBatch]]) -> bool:
        """Commit ``jobs``; ``False`` when the storage itself failed."""
        with self._write_lock:
            return self._commit_locked(jobs)

    def _commit_locked(self, jobs: list[WriteJob[WriteBatch]]) -> bool:
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = [self._apply(conn, job.batch) for job in jobs]
            conn.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if storage_trouble(exc):  # every batch would fail alike: refuse them all
                self._storage_failed(exc, jobs)
                return False
            if len(jobs) > 1:  # isolate the batch that failed
                outcomes = [self._commit_locked([job]) for job in jobs]  # each one, no shortcut
                return all(outcomes)
            _log.exception("could not store a batch")
            jobs[0].finish(None, RuntimeError("the database rejected the write"))
            return True
        if self._storage_failing:
            self._storage_failing = False
            _log.warning("the database accepts writes again")
        for job, result in zip(jobs, results, strict=True):
            job.finish(result)
        return True

    def _storage_failed(self, exc: BaseException, jobs: list[WriteJob[WriteBatch]]) -> None:
        if not self._storage_failing:
            self._storage_failing = True
            _log.warning("cannot write to the database (%s); answering 'retry later' "
                         "until writes succeed", exc)  # fmt: skip
        for job in jobs:
            job.finish(None, StorageFullError())

    def _apply(self, conn: sqlite3.Connection, batch: WriteBatch) -> WriteResult:
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
        self._insert_shared(conn, "resources", _INSERT_RESOURCES, batch.resources)
        self._insert_shared(conn, "scopes", _INSERT_SCOPES, batch.scopes)
        if batch.spans:
            conn.executemany(_INSERT_SPANS, batch.spans)
        if batch.logs:
            conn.executemany(_INSERT_LOGS, batch.logs)
        if batch.points:
            conn.executemany(_INSERT_POINTS, batch.points)
        stored = len(batch.spans) + len(batch.logs) + len(batch.points)
        if batch.errors:
            stored += conn.executemany(_INSERT_ERRORS, batch.errors).rowcount
        if batch.events:
            stored += conn.executemany(_INSERT_EVENTS, batch.events).rowcount
        if batch.exemplars:
            conn.executemany(_INSERT_EXEMPLARS, batch.exemplars)
        return WriteResult(stored)

    def _insert_shared(
        self, conn: sqlite3.Connection, table: str, sql: str, rows: dict[int, Row]
    ) -> None:
        """Insert the resource or scope entries not stored yet and charge them to their project."""
        added = [key for key, row in rows.items() if conn.execute(sql, row).rowcount]
        if added:
            self._retention.charge_shared(table, added)

    # -- retention -------------------------------------------------------------------
    def _safe_retention(self) -> None:
        """Run a retention pass on the writer thread; no failure of it may end the thread.

        The writer is the only path to the database: if it died, every write would
        answer 503 until a restart. The log names the error's type and where it was
        raised, not its message, which may quote stored data.
        """
        try:
            self.apply_retention()
        except Exception as exc:  # any failure: the writer must outlive the pass
            if storage_trouble(exc):  # already reported by the write path
                _log.debug("retention pass failed: the database cannot be written")
                return
            frame = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f"{frame[0].name} line {frame[0].lineno}" if frame else "?"
            _log.error("retention pass failed (%s in %s); retrying at the next pass",
                       type(exc).__name__, where)  # fmt: skip

    def live_bytes(self) -> int:
        """Bytes of the database holding data (excluding free pages)."""
        with self._write_lock:
            return self._retention.live_bytes()

    def usage_by_project(self) -> dict[str, int]:
        """Approximate bytes each project holds (what size trimming compares)."""
        with self._write_lock:
            self._retention.catch_up()
            return self._retention.usage()

    def apply_retention(self, now_ns: int | None = None) -> int:
        """Delete data received before the age limit, then trim past the size limit.

        Runs on the writer thread periodically; tests may call it directly. Returns
        the number of rows deleted. See ``_retention.py`` for the rules.
        """
        with self._write_lock:
            return self._retention.run(time.time_ns() if now_ns is None else now_ns)

    def _refuse_leftovers(self) -> None:
        """Jobs queued after the writer's last look never commit: tell their waiters."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.finish(None, StoreClosedError("the collector is shutting down"))

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
        if self._thread.is_alive():  # still committing: closing now would break the commit
            _log.warning("the database writer did not stop within %.0f s; leaving its "
                         "connection open", timeout)  # fmt: skip
        else:
            with self._write_lock:
                with contextlib.suppress(sqlite3.Error):
                    self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._writer.close()
            self._refuse_leftovers()
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break
