"""The opt-in persistent buffer: encoded batches kept on disk until delivered.

With ``with_persistent_buffer(directory)``, each span or log batch is encoded and
committed to a SQLite file (WAL) before any export attempt, and removed only once
the collector accepted it or refused it for good. A process killed mid-outage (even
by ``kill -9``) leaves its backlog in the directory; the next process for the same
service adopts it and sends it before its own data.

Every process writes its own file, ``{service}-{random}.spool``, and holds an
exclusive lock on it while alive. A file whose lock can be taken belongs to a process
that is gone: it is adopted, drained and deleted. This keeps forked workers and
several instances from sending the same rows twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from telemetryflow._exporting.sender import Outcome, Sender
from telemetryflow._exporting.stats import Stats
from telemetryflow._recording.diagnostics import mark_sdk_thread

__all__ = ["Spool", "SpoolDrainer", "SpooledBatch"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    signal TEXT NOT NULL,
    items INTEGER NOT NULL,
    body BLOB NOT NULL
)
"""


@dataclass(frozen=True)
class SpooledBatch:
    """One stored request, and which file it came from."""

    file: Path
    row_id: int
    signal: str
    items: int
    body: bytes
    adopted: bool = False
    """Left by an earlier process: not yet counted as recorded by this one."""


class _SpoolFile:
    """One SQLite spool file and the lock that says its owner is alive."""

    def __init__(self, path: Path, lock_handle: int) -> None:
        self.path = path
        self._lock_handle = lock_handle
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # survives a process crash
        self.db.execute(_SCHEMA)

    def bytes_and_items(self) -> tuple[int, int]:
        row = self.db.execute(
            "SELECT COALESCE(SUM(LENGTH(body)), 0), COALESCE(SUM(items), 0) FROM batches"
        ).fetchone()
        return int(row[0]), int(row[1])

    def oldest(self) -> tuple[int, str, int, bytes] | None:
        row = self.db.execute(
            "SELECT id, signal, items, body FROM batches ORDER BY id LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), int(row[2]), bytes(row[3]))

    def close(self, delete: bool = False) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
        if delete:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{self.path}{suffix}")
        with contextlib.suppress(OSError):
            os.close(self._lock_handle)
        if delete:
            with contextlib.suppress(OSError):
                os.unlink(f"{self.path}.lock")


def _try_lock(path: Path) -> int | None:
    handle = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        return None
    return handle


class Spool:
    """This process's spool file plus the backlog files it adopted."""

    def __init__(self, directory: str, service_name: str, max_bytes: int) -> None:
        self._directory = Path(directory)
        self._directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self._directory, 0o700)
        self._prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", service_name)[:64]
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._own = self._open_own()
        self._adopted = self._adopt_backlog()
        self._bytes, _ = self._own.bytes_and_items()
        self._pid = os.getpid()

    def _open_own(self) -> _SpoolFile:
        path = self._directory / f"{self._prefix}-{uuid.uuid4().hex[:12]}.spool"
        handle = _try_lock(path)
        if handle is None:  # pragma: no cover - a fresh random name is never locked
            raise OSError("cannot lock a new spool file")
        return _SpoolFile(path, handle)

    def _adopt_backlog(self) -> list[_SpoolFile]:
        adopted = []
        for path in sorted(
            self._directory.glob(f"{self._prefix}-*.spool"), key=lambda p: p.stat().st_mtime
        ):
            if path == self._own.path:
                continue
            handle = _try_lock(path)
            if handle is not None:
                adopted.append(_SpoolFile(path, handle))
        return adopted

    def backlog_items(self) -> int:
        """Items left behind by earlier processes and now owned by this one."""
        with self._lock:
            return sum(f.bytes_and_items()[1] for f in self._adopted)

    def append(self, signal: str, body: bytes, items: int) -> bool:
        """Store one encoded request durably; False if the byte budget is spent."""
        with self._lock:
            if self._bytes + len(body) > self._max_bytes:
                return False
            self._own.db.execute(
                "INSERT INTO batches (signal, items, body) VALUES (?, ?, ?)", (signal, items, body)
            )
            self._bytes += len(body)
            self._changed.notify_all()
            return True

    def next_batch(self, wait: float) -> SpooledBatch | None:
        """The oldest stored request, backlog first; waits up to ``wait`` for one."""
        with self._lock:
            found = self._oldest_locked()
            if found is None and wait > 0:
                self._changed.wait(wait)
                found = self._oldest_locked()
            return found

    def _oldest_locked(self) -> SpooledBatch | None:
        while self._adopted:
            backlog = self._adopted[0]
            row = backlog.oldest()
            if row is not None:
                return SpooledBatch(backlog.path, *row, adopted=True)
            self._adopted.pop(0).close(delete=True)
        row = self._own.oldest()
        return None if row is None else SpooledBatch(self._own.path, *row)

    def remove(self, batch: SpooledBatch) -> None:
        """Forget a request that was delivered or refused for good."""
        with self._lock:
            target = (
                self._own
                if batch.file == self._own.path
                else next((f for f in self._adopted if f.path == batch.file), None)
            )
            if target is None:
                return
            target.db.execute("DELETE FROM batches WHERE id = ?", (batch.row_id,))
            if target is self._own:
                self._bytes = max(0, self._bytes - len(batch.body))

    def pending_items(self) -> int:
        with self._lock:
            files = [self._own, *self._adopted]
            return sum(f.bytes_and_items()[1] for f in files)

    def wake(self) -> None:
        with self._lock:
            self._changed.notify_all()

    def abandon_after_fork(self) -> None:
        """In a forked child: let go of the parent's files without touching them."""
        for spool_file in [self._own, *self._adopted]:
            with contextlib.suppress(OSError):
                os.close(spool_file._lock_handle)

    def close(self) -> None:
        """Release the files; an empty own file is deleted, a non-empty one stays as
        backlog for the next process."""
        with self._lock:
            empty = self._own.bytes_and_items()[1] == 0
            self._own.close(delete=empty)
            for backlog in self._adopted:
                backlog.close()
            self._adopted = []


class SpoolDrainer:
    """The thread that sends stored requests, oldest first, and removes them when done."""

    def __init__(self, spool: Spool, sender: Sender, stats: Stats) -> None:
        self._spool = spool
        self._sender = sender
        self._stats = stats
        self._stop = threading.Event()
        self._own_file: Path | None = None
        self._thread = threading.Thread(target=self._run, name="telemetryflow-spool", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        mark_sdk_thread()
        failed_rounds = 0
        while not self._stop.is_set():
            batch = self._spool.next_batch(wait=0.5)
            if batch is None or not self._sender.wait_for_rate(None):
                continue
            outcome = self._sender.send(
                batch.signal,
                batch.body,
                batch.items,
                keep_on_failure=True,
                count_recorded=batch.adopted,
                durable=True,
            )
            if outcome is Outcome.KEEP:
                failed_rounds += 1
                self._stop.wait(self._sender.pause_after_failure(failed_rounds))
                continue
            failed_rounds = 0
            self._spool.remove(batch)

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._spool.wake()
        self._thread.join(max(0.0, timeout))
