"""Deadlines kept by one thread: starting one is a heap push, not a thread.

The gRPC receiver bounds the wait for each call's message. ``threading.Timer`` would
start (and end) an OS thread per call, about 80 µs of CPU each; here every deadline
of a server waits on one thread, which exits when none has been pending for a while
and starts again with the next.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Deadline", "Deadlines"]

_log = logging.getLogger("telemetryflow.collector")

_IDLE_EXIT_S = 5.0
_PURGE_AT = 1024


class Deadline:
    """One scheduled call; :meth:`cancel` stops it if it has not run yet."""

    __slots__ = ("_args", "_callback", "_owner", "cancelled")

    def __init__(self, owner: Deadlines, callback: Callable[..., Any], args: tuple[Any, ...]):
        self._owner = owner
        self._callback = callback
        self._args = args
        self.cancelled = False

    def cancel(self) -> None:
        """Drop the call, and what it refers to at once: a gRPC call kept alive by a
        cancelled deadline would hold its stream until the deadline's time came."""
        if not self.cancelled:
            self.cancelled = True
            self._callback, self._args = _nothing, ()
            self._owner._cancelled_one()

    def _run(self) -> None:
        if not self.cancelled:
            self._callback(*self._args)


def _nothing() -> None:
    """What a cancelled deadline would call."""


class Deadlines:
    """Calls due at a time, run in order on one daemon thread named ``name``."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._cancelled = 0
        self._running = False

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Deadline:
        """Run ``callback(*args)`` in ``delay`` seconds, unless cancelled first."""
        deadline = Deadline(self, callback, args)
        when = time.monotonic() + delay
        with self._cond:
            earlier = not self._heap or when < self._heap[0][0]
            heapq.heappush(self._heap, (when, next(self._order), deadline))
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name=self._name, daemon=True).start()
            elif earlier:  # the thread sleeps until a later deadline: wake it
                self._cond.notify()
        return deadline

    def _cancelled_one(self) -> None:
        with self._cond:
            self._cancelled += 1
            if self._cancelled >= _PURGE_AT and self._cancelled * 2 >= len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._next_due()
                if due is None:
                    return
            try:
                due._run()
            except Exception:  # one failing callback must not stop every later deadline
                _log.exception("a deadline callback failed")

    def _next_due(self) -> Deadline | None:
        """Wait for the earliest deadline (the lock held); ``None`` once idle long enough."""
        idle_since = time.monotonic()
        while True:
            now = time.monotonic()
            if self._heap and self._heap[0][0] <= now:
                deadline = heapq.heappop(self._heap)[2]
                if deadline.cancelled:
                    self._cancelled = max(0, self._cancelled - 1)
                    continue
                return deadline
            if not self._heap:
                if now - idle_since >= _IDLE_EXIT_S:
                    self._running = False
                    return None
                self._cond.wait(_IDLE_EXIT_S)
            else:
                idle_since = now
                self._cond.wait(self._heap[0][0] - now)
