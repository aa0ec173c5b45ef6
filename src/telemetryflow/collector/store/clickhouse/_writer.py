"""Batched writes to ClickHouse: one writer thread, a bounded queue, one INSERT per table.

ClickHouse wants few large inserts, not one per request: the writer takes every job
waiting (up to :data:`_GROUP_MAX`), joins their rows table by table and inserts each
table once, then wakes the requests. A full queue refuses at once
(:class:`OverloadedError`, answered 503 with a retry hint); an engine that fails (a
server down, a disk full) fails the jobs it held with :class:`StorageFullError`, also a
503: the client keeps its data and retries.

Idempotency keys (the 001 report/batch) are checked by this one thread, against the
table and the jobs before them, so one key stores its points once.
"""

from __future__ import annotations

import concurrent.futures
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

__all__ = ["ChBatch", "Writer"]

_log = logging.getLogger("telemetryflow.collector")
_GROUP_MAX = 256


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
            results = self._insert(jobs)
        except Exception as exc:  # the engine's errors have no common type
            if not self._failing:
                _log.warning("ClickHouse refused a write (%s); answering 503 until it recovers",
                             type(exc).__name__)  # fmt: skip
            self._failing = True
            for job in jobs:
                job.finish(None, StorageFullError())
            return
        if self._failing:
            _log.info("ClickHouse takes writes again")
            self._failing = False
        for job, result in zip(jobs, results, strict=True):
            job.finish(result)

    def _insert(self, jobs: list[WriteJob[ChBatch]]) -> list[WriteResult]:
        previous = self._replays(jobs)
        merged: dict[str, list[dict[str, Any]]] = {}
        encoded: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        results: list[WriteResult] = []
        for job in jobs:
            batch = job.batch
            seen = previous.get(id(job))
            if seen is not None:
                results.append(WriteResult(0, seen))
                continue
            for key, rows in batch.rows.items():
                merged.setdefault(key, []).extend(rows)
            for key, (columns, lines) in batch.lines.items():
                encoded.setdefault((key, columns), []).extend(lines)
            if batch.idempotency is not None:
                project, key, answer = batch.idempotency
                merged.setdefault(IDEMPOTENCY_TABLE, []).append({
                    "project": project, "key": key, "result": json.dumps(answer),
                    "received_ns": time.time_ns(),
                })  # fmt: skip
            results.append(WriteResult(batch.stored))
        for (key, columns), lines in encoded.items():
            if lines:
                data = ("\n".join(lines) + "\n").encode()
                self._ch.insert_lines(self._table_of(key), columns, data)
        for key, rows in merged.items():
            if rows:
                self._ch.insert(self._table_of(key), rows)
        return results

    def _replays(self, jobs: list[WriteJob[ChBatch]]) -> dict[int, dict[str, Any]]:
        """Jobs whose idempotency key was stored before (or by an earlier job here)."""
        keyed = [(job, job.batch.idempotency) for job in jobs if job.batch.idempotency]
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
        stored: dict[tuple[str, str], dict[str, Any]] = {
            (row[0], row[1]): json.loads(row[2]) for row in rows
        }
        out: dict[int, dict[str, Any]] = {}
        for job, (project, key, answer) in keyed:  # type: ignore[misc]
            found = stored.get((project, key))
            if found is not None:
                out[id(job)] = found
            else:
                stored[(project, key)] = answer
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
