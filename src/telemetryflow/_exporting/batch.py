"""A bounded queue and one export thread per signal (spans, logs).

Recording threads only append to a deque under a lock: they never wait for the
network. The queue is bounded in items and in (estimated) bytes; when it is full the
new item is dropped and counted. The worker sends when a batch is full, when
``schedule_delay`` has passed, or when a flush asks it to.

A batch that fails with a retryable error after its retries is put back at the head
of the queue and tried again after a growing pause: an outage shorter than what the
buffer holds loses nothing, and order is kept.

Fork safety: the queue remembers the pid that owns it. A forked child finds a
different pid on its first call, discards the parent's queued items (the parent
still owns and sends them) and starts its own worker thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from telemetryflow._exporting.stats import DropReason, Stats
from telemetryflow._recording.diagnostics import mark_sdk_thread, warn_throttled

__all__ = ["BatchQueue"]

T = TypeVar("T")

Export = Callable[[Sequence[T], "float | None"], Sequence[T]]
"""Sends a batch before the deadline; returns the items to keep for a later try."""


class BatchQueue(Generic[T]):
    """Buffers items of one signal and exports them in batches on its own thread."""

    def __init__(
        self,
        signal: str,
        export: Callable[[Sequence[T], float | None], Sequence[T]],
        stats: Stats,
        *,
        max_queue_size: int,
        max_batch_size: int,
        schedule_delay: float,
        max_queue_bytes: int | None = None,
        size_of: Callable[[T], int] | None = None,
        before_export: Callable[[float | None], bool] | None = None,
        pause_after_failure: Callable[[int], float] | None = None,
    ) -> None:
        self.signal = signal
        self._export = export
        self._stats = stats
        self._max_queue = max_queue_size
        self._max_batch = max_batch_size
        self._max_bytes = max_queue_bytes
        self._size_of = size_of if max_queue_bytes is not None else None
        self._delay = schedule_delay
        self._before_export = before_export
        self._pause = pause_after_failure or (lambda _round: schedule_delay)
        self._reset_state()

    def _reset_state(self) -> None:
        self._pid = os.getpid()
        self._queue: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # put() takes the lock directly
        self._flush_requests: list[threading.Event] = []
        self._shutdown = False
        self._deadline: float | None = None
        self._exporting = 0
        self._failed_rounds = 0
        self._worker: threading.Thread | None = None

    # -- called on application threads ---------------------------------------------
    def put(self, item: T) -> None:
        """Queue ``item``; never blocks on the network, never raises."""
        if self._pid != os.getpid():
            self._reset_state()  # forked: the parent keeps and sends its own items
        size = self._size_of(item) if self._size_of is not None else 0
        with self._lock:  # the condition's lock, without Condition.__enter__'s call
            if self._shutdown:
                reason: str | None = DropReason.SHUTDOWN
            elif len(self._queue) >= self._max_queue or (
                self._max_bytes is not None and self._bytes + size > self._max_bytes
            ):
                reason = DropReason.QUEUE_FULL
            else:
                reason = None
                self._queue.append((item, size))
                self._bytes += size
                if self._worker is None:
                    self._start_worker()
                if len(self._queue) >= self._max_batch:
                    self._cond.notify()
        if reason is not None:
            self._stats.dropped(self.signal, reason, 1)
            if reason == DropReason.QUEUE_FULL:
                warn_throttled(
                    f"queue:{self.signal}",
                    "%s buffer is full (%d items); dropping new ones until it drains",
                    self.signal,
                    self._max_queue,
                )

    @property
    def depth(self) -> int:
        """Items waiting or being exported."""
        return len(self._queue) + self._exporting

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def force_flush(self, timeout: float) -> bool:
        """Export everything queued now; False if ``timeout`` passes first."""
        if self._pid != os.getpid():
            self._reset_state()
        done = threading.Event()
        with self._cond:
            if self._worker is None or (not self._queue and not self._exporting):
                return True
            self._deadline = time.monotonic() + timeout
            self._flush_requests.append(done)
            self._cond.notify()
        return done.wait(timeout)

    def begin_shutdown(self, deadline: float) -> None:
        """Start sending everything queued, retrying until ``deadline``; returns at once.

        From now on the worker drains the queue batch after batch with the sender's
        shutdown rules, so the buffers of all signals drain side by side.
        """
        if self._pid != os.getpid():
            self._reset_state()
        with self._cond:
            if self._shutdown:
                return
            self._shutdown = True
            self._deadline = deadline
            self._cond.notify()

    def shutdown(self, timeout: float) -> None:
        """Export what is queued within ``timeout``; what is left counts as dropped."""
        self.begin_shutdown(time.monotonic() + timeout)
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(max(0.0, timeout))
        with self._cond:
            self._drop_all(DropReason.SHUTDOWN_DEADLINE)

    def join(self, timeout: float) -> None:
        """Wait for the worker to finish the batch it holds (after shutdown)."""
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(max(0.0, timeout))

    # -- the worker thread ----------------------------------------------------------
    def _start_worker(self) -> None:
        self._worker = threading.Thread(
            target=self._run, name=f"telemetryflow-{self.signal}", daemon=True
        )
        self._worker.start()

    def _run(self) -> None:
        mark_sdk_thread()
        while True:
            with self._cond:
                if not self._urgent() and len(self._queue) < self._max_batch:
                    self._cond.wait(self._delay)
                if self._shutdown and not self._queue:
                    self._release_flushes()
                    return
                batch = self._take_batch()
                deadline = self._deadline if self._urgent() else None
            kept: Sequence[T] = self._send(batch, deadline) if batch else ()
            with self._cond:
                self._exporting = 0
                if kept:
                    self._requeue(kept)
                if not self._queue:
                    self._release_flushes()
                elif deadline is not None and time.monotonic() >= deadline:
                    if self._shutdown:
                        self._drop_all(DropReason.SHUTDOWN_DEADLINE)
                        return
                    # The flush waiters have given up; go back to the normal rhythm.
                    self._flush_requests.clear()
                    self._deadline = None
                if kept and not self._urgent():
                    self._failed_rounds += 1
                    self._cond.wait(self._pause(self._failed_rounds))
                elif not kept:
                    self._failed_rounds = 0

    def _urgent(self) -> bool:
        return self._shutdown or bool(self._flush_requests)

    def _take_batch(self) -> list[T]:
        """The oldest items, up to a batch (called with the lock held: kept short)."""
        queue = self._queue
        if len(queue) <= self._max_batch:
            pairs = list(queue)
            queue.clear()
        else:
            popleft = queue.popleft
            pairs = [popleft() for _ in range(self._max_batch)]
        batch = [item for item, _ in pairs]
        self._bytes -= sum(size for _, size in pairs)
        self._exporting = len(batch)
        return batch

    def _requeue(self, items: Sequence[T]) -> None:
        """Put kept items back at the head; if new items filled the room, drop newest."""
        size_of = self._size_of
        for item in reversed(items):
            size = size_of(item) if size_of is not None else 0
            self._queue.appendleft((item, size))
            self._bytes += size
        overflow = len(self._queue) - self._max_queue
        for _ in range(max(0, overflow)):
            _, size = self._queue.pop()
            self._bytes -= size
        if overflow > 0:
            self._stats.dropped(self.signal, DropReason.QUEUE_FULL, overflow)

    def _drop_all(self, reason: str) -> None:
        """Count every queued item as dropped (called with the lock held)."""
        left = len(self._queue)
        self._queue.clear()
        self._bytes = 0
        self._stats.dropped(self.signal, reason, left)

    def _release_flushes(self) -> None:
        for event in self._flush_requests:
            event.set()
        self._flush_requests.clear()
        if not self._shutdown:
            self._deadline = None

    def _send(self, batch: list[T], deadline: float | None) -> Sequence[T]:
        if self._before_export is not None and not self._before_export(deadline):
            return batch  # rate limited until the deadline: keep for the next round
        try:
            return self._export(batch, deadline)
        except Exception as exc:
            self._stats.dropped(self.signal, DropReason.INVALID, len(batch))
            warn_throttled(
                f"export-bug:{self.signal}",
                "%s export failed: %s: %s",
                self.signal,
                type(exc).__name__,
                exc,
            )
            return ()
