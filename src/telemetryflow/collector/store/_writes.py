"""What every store's writer shares: its refusals, its result, a queued write.

Both backends (SQLite, ClickHouse) run one writer thread fed by a bounded queue; a
request waits on the future of its :class:`WriteJob`. The receivers turn
:class:`OverloadedError` (and :class:`StorageFullError`) into a retryable 503 /
``UNAVAILABLE`` and :class:`StoreClosedError` into the same while shutting down, so
they name these classes, never a backend's module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "STORAGE_RETRY_S",
    "OverloadedError",
    "StorageFullError",
    "StoreClosedError",
    "WriteJob",
    "WriteResult",
    "await_write",
    "enqueue",
]

STORAGE_RETRY_S = 2.0
"""Seconds a client is told to wait when the store cannot write (disk full, I/O)."""
B = TypeVar("B")


class OverloadedError(Exception):
    """The write queue is full; retry after :attr:`retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("the collector is overloaded")
        self.retry_after = retry_after


class StorageFullError(OverloadedError):
    """The database could not be written (disk full, I/O error); nothing was stored.

    Temporary by nature: the client keeps the data and retries after
    :attr:`retry_after` seconds, and writes resume on their own once space returns.
    """

    def __init__(self, retry_after: float = STORAGE_RETRY_S) -> None:
        super().__init__(retry_after)
        self.args = ("the collector cannot write to its database; retry later",)


class StoreClosedError(Exception):
    """The store is shutting down and takes no more writes."""


@dataclass(frozen=True)
class WriteResult:
    """What the writer did with a batch. ``previous`` is set for a repeated key."""

    stored: int
    previous: dict[str, Any] | None = None


class WriteJob(Generic[B]):
    """A batch and the future its writer completes once the batch is committed (or not)."""

    __slots__ = ("batch", "future")

    def __init__(self, batch: B) -> None:
        self.batch = batch
        self.future: concurrent.futures.Future[WriteResult] = concurrent.futures.Future()

    def finish(self, result: WriteResult | None, error: BaseException | None = None) -> None:
        """Wake the request; one that stopped waiting (timed out) cancelled its future."""
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)  # type: ignore[arg-type]


def enqueue(
    jobs: queue.Queue[WriteJob[B] | None], batch: B, closed: bool
) -> concurrent.futures.Future[WriteResult]:
    """Queue ``batch`` for a writer thread: the future completes once it is stored.

    Raises:
        OverloadedError: too many writes are waiting; nothing was stored.
        StoreClosedError: the store is closing; nothing was stored.
    """
    if closed:
        raise StoreClosedError("the collector is shutting down")
    job = WriteJob(batch)
    try:
        jobs.put_nowait(job)
    except queue.Full:
        raise OverloadedError(retry_after=1.0) from None
    return job.future


async def await_write(
    future: concurrent.futures.Future[WriteResult], timeout: float
) -> WriteResult:
    """Wait for a queued write on an event loop: the loop waits, no thread does.

    Raises:
        TimeoutError: the write did not finish in time (it may still land).
    """
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
    except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
        raise TimeoutError("the database did not store the batch in time") from None
