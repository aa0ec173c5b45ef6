"""How many queries run at once, and for how long.

Queries share worker threads with ingestion (HTTP) and run on the web view's pool, and
a wide one can read for a long time. :class:`QueryGate` caps queries in flight, in
total and per key, refusing the rest at once (``503`` with a retry hint) rather than
queueing them on threads ingestion needs; and it stops a query's SQL past a deadline
through SQLite's progress handler, answering ``422`` that names what to narrow.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator

from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.store._writes import OverloadedError
from telemetryflow.collector.store.sqlite._store import Store, storage_trouble

__all__ = ["QueryBusyError", "QueryGate", "ReadTroubleError", "reading"]

_PROGRESS_STEPS = 10_000
"""SQLite virtual-machine steps between deadline checks (well under a millisecond)."""


class QueryBusyError(OverloadedError):
    """Too many queries are running (in total, or for this key); retry shortly."""

    def __init__(self, message: str) -> None:
        super().__init__(1.0)
        self.args = (message,)


class ReadTroubleError(OverloadedError):
    """The database could not be read (locked, I/O error, cannot be opened): ``503``."""

    def __init__(self, retry_after: float = 2.0) -> None:
        super().__init__(retry_after)
        self.args = ("the collector cannot read its database; retry later",)


@contextlib.contextmanager
def reading(store: Store) -> Iterator[sqlite3.Connection]:
    """A read connection; storage trouble (as the store classifies it for writes) is
    raised as :class:`ReadTroubleError`, so it is answered ``503``, not ``500``."""
    try:
        with store.reader() as conn:
            yield conn
    except sqlite3.Error as exc:
        if storage_trouble(exc):
            raise ReadTroubleError() from exc
        raise


class QueryGate:
    """At most ``total`` queries at once, ``per_key`` of them for one key, each bounded
    to ``deadline`` seconds of SQL."""

    def __init__(self, total: int = 4, per_key: int = 2, deadline: float = 30.0) -> None:
        self.total = total
        self.per_key = per_key
        self.deadline = deadline
        self._lock = threading.Lock()
        self._running = 0
        self._by_key: dict[str, int] = {}

    @contextlib.contextmanager
    def admit(self, key: str | None) -> Iterator[None]:
        """Hold a query slot for ``key`` (``None``: authentication off, total cap only).

        Raises:
            QueryBusyError: no slot is free; nothing was run.
        """
        self._enter(key)
        try:
            yield
        finally:
            self._leave(key)

    def _enter(self, key: str | None) -> None:
        with self._lock:
            if self._running >= self.total:
                raise QueryBusyError("too many queries are running; retry shortly")
            if key is not None:
                if self._by_key.get(key, 0) >= self.per_key:
                    raise QueryBusyError("too many queries of this key are running; retry shortly")
                self._by_key[key] = self._by_key.get(key, 0) + 1
            self._running += 1

    def _leave(self, key: str | None) -> None:
        with self._lock:
            self._running -= 1
            if key is not None:
                left = self._by_key.pop(key, 1) - 1
                if left > 0:
                    self._by_key[key] = left

    @contextlib.contextmanager
    def bounded(self, conn: sqlite3.Connection) -> Iterator[None]:
        """Interrupt ``conn``'s SQL past the deadline; answer 422 naming what to narrow."""
        ends = time.monotonic() + self.deadline
        expired = False

        def check() -> int:
            nonlocal expired
            expired = time.monotonic() > ends
            return 1 if expired else 0

        conn.set_progress_handler(check, _PROGRESS_STEPS)
        try:
            yield
        except sqlite3.OperationalError:
            if not expired:
                raise
            raise BadRequestError(
                422,
                f"the query ran past {self.deadline:g} s; narrow its time range "
                "(since/until) or add filters",
            ) from None
        finally:
            conn.set_progress_handler(None, 0)
