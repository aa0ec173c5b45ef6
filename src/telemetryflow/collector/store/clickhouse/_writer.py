"""Batched writes to ClickHouse: one writer thread, a bounded queue, one INSERT per table.

ClickHouse wants few large inserts, not one per request: the writer takes every job
waiting (up to :data:`_GROUP_MAX`), joins their rows table by table and inserts each
table once, then wakes the requests. A full queue refuses at once
(:class:`OverloadedError`, answered 503 with a retry hint); a table whose insert fails (a
server down, a disk full) fails the jobs with rows in it with :class:`StorageFullError`,
also a 503: the client keeps its data and retries. The other jobs of the group succeed:
their rows are stored, and a retry of theirs would store them twice. A user that may not
write fails them with :class:`StoreReadOnlyError`.

Idempotency keys (the 001 report/batch) are checked by this one thread, against the
table and the jobs before them, so one key stores its points once.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from telemetryflow.collector.store._writes import (
    StorageFullError,
    StoreClosedError,
    WriteJob,
    WriteResult,
    await_write,
    enqueue,
)
from telemetryflow.collector.store.clickhouse._ddl import IDEMPOTENCY_TABLE
from telemetryflow.collector.store.clickhouse._seam import ClickHouseConnection
from telemetryflow.collector.store.clickhouse._tables import Tables

__all__ = ["ChBatch", "StoreReadOnlyError", "Writer", "refuses_writes", "write_error"]

_log = logging.getLogger("telemetryflow.collector")
_GROUP_MAX = 256
_READ_ONLY_CODES = ("(READONLY)", "Code: 164.", "(ACCESS_DENIED)", "Code: 497.")


class StoreReadOnlyError(StoreClosedError):
    """The ClickHouse user may not write: answered ``503`` naming the reason.

    Nothing is stored and retrying does not help until the store's user may write (or
    the collector is pointed at another store); the message says so.
    """

    def __init__(self) -> None:
        super().__init__(
            "the collector's ClickHouse store is read-only (its user may not write); "
            "nothing was stored"
        )


def refuses_writes(exc: BaseException) -> bool:
    """Whether ClickHouse refused since the user may not write (READONLY, ACCESS_DENIED)."""
    text = str(exc)
    return any(code in text for code in _READ_ONLY_CODES)


def write_error(exc: BaseException) -> BaseException:
    """What a job refused with ``exc`` fails with: read-only, or the retryable 503."""
    error: BaseException = (
        StoreReadOnlyError()
        if isinstance(exc, StoreReadOnlyError) or refuses_writes(exc)
        else StorageFullError()
    )
    error.__cause__ = exc.__cause__ if isinstance(exc, StorageFullError) else exc
    return error


@dataclass
class ChBatch:
    """Rows of one request by table name (as :class:`Tables` fields or our own tables)."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lines: dict[str, tuple[tuple[str, ...], list[str]]] = field(default_factory=dict)
    """Rows already encoded: table key → (columns, ``JSONCompactEachRow`` lines)."""
    stored: int = 0
    """How many items of the request these rows hold (spans, records, points)."""
    idempotency: tuple[str, str, dict[str, Any]] | None = None
    """``(project, key, answer)``: stored once; a repeat stores nothing."""


class Writer:
    """The one thread that writes; ``table_of`` maps a batch key to a qualified table."""

    def __init__(
        self,
        ch: ClickHouseConnection,
        tables: Tables,
        table_of: Callable[[str], str],
        max_pending: int = 256,
    ) -> None:
        self._ch = ch
        self._tables = tables
        self._table_of = table_of
        self._queue: queue.Queue[WriteJob[ChBatch] | None] = queue.Queue(maxsize=max_pending)
        self._closed = False
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="tf-clickhouse-writer", daemon=True)
        self._thread.start()

    def submit_future(self, batch: ChBatch) -> concurrent.futures.Future[WriteResult]:
        """Queue ``batch``: the future completes once it is inserted.

        Raises:
            OverloadedError: too many writes are waiting; nothing was stored.
            StoreClosedError: the store is closing; nothing was stored.
        """
        return enqueue(self._queue, batch, self._closed)

    def submit(self, batch: ChBatch, timeout: float = 30.0) -> WriteResult:
        """Store ``batch`` and return once it is inserted (raises as :meth:`submit_future`)."""
        future = self.submit_future(batch)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError("the database did not take the rows in time") from None

    async def submit_async(self, batch: ChBatch, timeout: float = 30.0) -> WriteResult:
        """:meth:`submit` on an event loop: the loop waits, no thread does."""
        return await await_write(self.submit_future(batch), timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            stop = False
            while len(jobs) < _GROUP_MAX:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
            self._write(jobs)
            if stop:
                return

    def _write(self, jobs: list[WriteJob[ChBatch]]) -> None:
        try:
            outcomes = self._insert(jobs)
        except Exception as exc:  # the engine's errors have no common type
            outcomes = [write_error(exc) for _ in jobs]
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures and not self._failing:
            cause = failures[0].__cause__ or failures[0]
            text = str(cause).splitlines()[0][:300] if str(cause) else type(cause).__name__
            _log.warning("ClickHouse refused a write (%s); answering 503 until it recovers", text)
        elif self._failing and not failures:
            _log.info("ClickHouse takes writes again")
        self._failing = bool(failures)
        for job, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                job.finish(None, outcome)
            else:
                job.finish(outcome)

    def _insert(self, jobs: list[WriteJob[ChBatch]]) -> list[WriteResult | BaseException]:
        """Insert the group table by table; a job fails only with a table it has rows in.

        A trace request is not failed (and retried, its spans stored twice) because a
        metric table of another request in the group refused its rows.
        """
        unchecked: BaseException | None = None
        try:
            previous = self._replays(jobs)
        except Exception as exc:  # the keys cannot be checked: only keyed jobs fail
            previous, unchecked = {}, exc
        merged: dict[str, list[dict[str, Any]]] = {}
        encoded: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        users: dict[Any, list[int]] = {}
        """Table (rows key, or lines key and columns) → the jobs with rows in it."""
        results: list[WriteResult | BaseException] = []
        for index, job in enumerate(jobs):
            batch = job.batch
            if index in previous:
                results.append(WriteResult(0, previous[index][0]))
                continue
            if unchecked is not None and batch.idempotency is not None:
                results.append(write_error(unchecked))
                continue
            for key, rows in batch.rows.items():
                if rows:
                    merged.setdefault(key, []).extend(rows)
                    users.setdefault(key, []).append(index)
            for key, (columns, lines) in batch.lines.items():
                if lines:
                    encoded.setdefault((key, columns), []).extend(lines)
                    users.setdefault((key, columns), []).append(index)
            results.append(WriteResult(batch.stored))
        for (key, columns), lines in encoded.items():
            data = ("\n".join(lines) + "\n").encode()
            insert = functools.partial(self._ch.insert_lines, self._table_of(key), columns, data)
            self._attempt(results, users[(key, columns)], insert)
        for key, rows in merged.items():
            self._attempt(
                results, users[key], functools.partial(self._ch.insert, self._table_of(key), rows)
            )
        for index, (_, origin) in previous.items():
            first = results[origin] if origin is not None else None
            if isinstance(first, BaseException):
                results[index] = write_error(first)  # its key was never stored
        self._remember(jobs, results, previous)
        return results

    @staticmethod
    def _attempt(
        results: list[WriteResult | BaseException], users: list[int], insert: Callable[[], None]
    ) -> None:
        """Run one table's insert; when refused, its jobs fail (the others are untouched)."""
        try:
            insert()
        except Exception as exc:  # the engine's errors have no common type
            for index in users:
                results[index] = write_error(exc)

    def _remember(
        self,
        jobs: list[WriteJob[ChBatch]],
        results: list[WriteResult | BaseException],
        previous: dict[int, tuple[dict[str, Any], int | None]],
    ) -> None:
        """Store the idempotency keys of the jobs whose rows all went in."""
        rows = [
            {"project": key[0], "key": key[1], "result": json.dumps(key[2]),
             "received_ns": time.time_ns()}
            for index, (job, key) in enumerate((job, job.batch.idempotency) for job in jobs)
            if key is not None and index not in previous
            and not isinstance(results[index], BaseException)
        ]  # fmt: skip
        if not rows:
            return
        try:
            self._ch.insert(self._table_of(IDEMPOTENCY_TABLE), rows)
        except Exception as exc:  # the rows are stored: answer them, a repeat may store twice
            _log.warning("ClickHouse refused the idempotency keys of stored points (%s)", exc)

    def _replays(
        self, jobs: list[WriteJob[ChBatch]]
    ) -> dict[int, tuple[dict[str, Any], int | None]]:
        """Jobs (by index) whose idempotency key was stored before, or by an earlier job
        of this group: the answer, and that earlier job's index (``None``: stored before)."""
        keyed = [(i, job.batch.idempotency) for i, job in enumerate(jobs) if job.batch.idempotency]
        if not keyed:
            return {}
        pairs = [(project, key) for _, (project, key, _) in keyed]  # type: ignore[misc]
        rows = self._ch.query(
            f"SELECT project, key, any(result) FROM "  # noqa: S608
            f"{self._tables.qualified(IDEMPOTENCY_TABLE)} "
            "WHERE has({pairs:Array(Tuple(String, String))}, (project, key)) "
            "GROUP BY project, key",
            {"pairs": pairs},
        )
        stored: dict[tuple[str, str], tuple[dict[str, Any], int | None]] = {
            (row[0], row[1]): (json.loads(row[2]), None) for row in rows
        }
        out: dict[int, tuple[dict[str, Any], int | None]] = {}
        for index, (project, key, answer) in keyed:  # type: ignore[misc]
            found = stored.get((project, key))
            if found is not None:
                out[index] = found
            else:
                stored[(project, key)] = (answer, index)
        return out

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop; later submits raise :class:`StoreClosedError`."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._queue.put(None, timeout=0.5)
                break
            except queue.Full:
                continue
        self._thread.join(max(0.0, deadline - time.monotonic()))
        while True:  # anything left behind the stop signal was never stored
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.finish(None, StoreClosedError("the collector is shutting down"))
