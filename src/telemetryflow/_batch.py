"""A bounded queue and one export thread per signal (spans, logs).

Recording threads only append to a deque under a lock: they never wait for the
network. When the queue is full the new item is dropped and counted. The worker sends
when a batch is full, when ``schedule_delay`` has passed, or when a flush asks it to.

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

from telemetryflow._diagnostics import mark_sdk_thread, warn_throttled
from telemetryflow._stats import DropReason, Stats

__all__ = ["BatchQueue"]

T = TypeVar("T")


class BatchQueue(Generic[T]):
    """Buffers items of one signal and exports them in batches on its own thread."""

    def __init__(
        self,
        signal: str,
        export: Callable[[Sequence[T], float | None], None],
        stats: Stats,
        *,
        max_queue_size: int,
        max_batch_size: int,
        schedule_delay: float,
        before_export: Callable[[float | None], bool] | None = None,
    ) -> None:
        self.signal = signal
        self._export = export
        self._stats = stats
        self._max_queue = max_queue_size
        self._max_batch = max_batch_size
        self._delay = schedule_delay
        self._before_export = before_export
        self._reset_state()

    def _reset_state(self) -> None:
        self._pid = os.getpid()
        self._queue: deque[T] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._flush_requests: list[threading.Event] = []
        self._shutdown = False
        self._deadline: float | None = None
        self._exporting = 0
        self._worker: threading.Thread | None = None

    # -- called on application threads ---------------------------------------------
    def put(self, item: T) -> None:
        """Queue ``item``; never blocks on the network, never raises."""
        if self._pid != os.getpid():
            self._after_fork()
        with self._cond:
            if self._shutdown:
                self._stats.dropped(self.signal, DropReason.SHUTDOWN, 1)
                return
            if len(self._queue) >= self._max_queue:
                full = True
            else:
                full = False
                self._queue.append(item)
                if self._worker is None:
                    self._start_worker()
                if len(self._queue) >= self._max_batch:
                    self._cond.notify()
        if full:
            self._stats.dropped(self.signal, DropReason.QUEUE_FULL, 1)
            warn_throttled(
                f"queue:{self.signal}",
                "%s queue is full (%d); dropping new items until it drains",
                self.signal,
                self._max_queue,
            )

    @property
    def depth(self) -> int:
        return len(self._queue) + self._exporting

    def force_flush(self, timeout: float) -> bool:
        """Export everything queued now; False if ``timeout`` passes first."""
        if self._pid != os.getpid():
            self._after_fork()
        done = threading.Event()
        with self._cond:
            if self._worker is None or (not self._queue and not self._exporting):
                return True
            self._deadline = time.monotonic() + timeout
            self._flush_requests.append(done)
            self._cond.notify()
        return done.wait(timeout)

    def shutdown(self, timeout: float) -> None:
        """Export what is queued within ``timeout``; what is left counts as dropped."""
        if self._pid != os.getpid():
            self._after_fork()
        with self._cond:
            if self._shutdown:
                return
            self._shutdown = True
            self._deadline = time.monotonic() + timeout
            self._cond.notify()
            worker = self._worker
        if worker is not None:
            worker.join(max(timeout, 0.0))
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
        self._stats.dropped(self.signal, DropReason.SHUTDOWN, left)

    def _after_fork(self) -> None:
        # The parent still owns its queue; the child starts empty with fresh locks.
        self._reset_state()

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
                if (
                    not self._shutdown
                    and not self._flush_requests
                    and (len(self._queue) < self._max_batch)
                ):
                    self._cond.wait(self._delay)
                if self._shutdown and not self._queue:
                    self._release_flushes()
                    return
                batch = self._take_batch()
                deadline = self._deadline if (self._shutdown or self._flush_requests) else None
            if batch:
                self._send(batch, deadline)
            with self._cond:
                self._exporting = 0
                if not self._queue:
                    self._release_flushes()
                elif deadline is not None and time.monotonic() >= deadline:
                    if self._shutdown:
                        return
                    # The flush waiters have given up; go back to the normal rhythm.
                    self._flush_requests.clear()
                    self._deadline = None

    def _take_batch(self) -> list[T]:
        count = min(len(self._queue), self._max_batch)
        batch = [self._queue.popleft() for _ in range(count)]
        self._exporting = len(batch)
        return batch

    def _release_flushes(self) -> None:
        for event in self._flush_requests:
            event.set()
        self._flush_requests.clear()
        if not self._shutdown:
            self._deadline = None

    def _send(self, batch: list[T], deadline: float | None) -> None:
        if self._before_export is not None and not self._before_export(deadline):
            # Rate limited until the deadline: keep the items for the next round.
            with self._cond:
                self._queue.extendleft(reversed(batch))
                overflow = len(self._queue) - self._max_queue
                for _ in range(max(0, overflow)):
                    self._queue.pop()
            if overflow > 0:
                self._stats.dropped(self.signal, DropReason.QUEUE_FULL, overflow)
            if deadline is None:
                with self._cond:
                    self._cond.wait(0.1)
            return
        try:
            self._export(batch, deadline)
        except Exception as exc:
            self._stats.dropped(self.signal, DropReason.INVALID, len(batch))
            warn_throttled(
                f"export-bug:{self.signal}",
                "%s export failed: %s: %s",
                self.signal,
                type(exc).__name__,
                exc,
            )
