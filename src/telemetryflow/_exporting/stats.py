"""Exact accounting of what happened to every recorded item.

For each signal: ``recorded = exported + dropped + pending``, where ``dropped`` is
broken down by reason and ``pending`` is what sits in a buffer or in a request not
yet answered. Every path that counts an item as exported or dropped counts it as
recorded first (or at the same time, for a call refused at the door), and never
counts more than it was given, so ``pending`` is never negative and is zero once
everything is flushed. The client's ``get_status()`` and ``health()`` read from here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from telemetryflow._exporting.forksafe import fork_safe_lock

__all__ = ["DropReason", "SignalStats", "Stats"]


class DropReason:
    """Why items were not delivered (string constants, stable in status output)."""

    QUEUE_FULL = "queue_full"
    RATE_LIMITED = "rate_limited"
    NON_RETRYABLE = "non_retryable"
    RETRIES_EXHAUSTED = "retries_exhausted"
    PARTIAL_REJECTION = "partial_rejection"
    SHUTDOWN = "shutdown"
    """Recorded after shutdown had begun: there was no export left to carry it."""
    SHUTDOWN_DEADLINE = "shutdown_deadline"
    """Still undelivered when the shutdown deadline came (or the next retry would
    have passed it)."""
    INVALID = "invalid"
    TOO_LARGE = "too_large"


@dataclass
class SignalStats:
    """Counters for one signal. Mutated under the owning :class:`Stats` lock."""

    recorded: int = 0
    exported: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    requests_ok: int = 0
    requests_failed: int = 0

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class Stats:
    """Thread-safe counters for traces, metrics and logs, plus the last export error."""

    def __init__(self) -> None:
        self._lock = fork_safe_lock()  # reset() takes it in a forked child
        self.signals: dict[str, SignalStats] = {
            "traces": SignalStats(),
            "metrics": SignalStats(),
            "logs": SignalStats(),
        }
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_success_at: float | None = None

    def recorded(self, signal: str, count: int = 1) -> None:
        with self._lock:
            self.signals[signal].recorded += count

    def refused(self, signal: str, reason: str, count: int = 1) -> None:
        """Items a recording call could not use: recorded and dropped in one step."""
        with self._lock:
            stats = self.signals[signal]
            stats.recorded += count
            stats.dropped[reason] = stats.dropped.get(reason, 0) + count

    def exported(self, signal: str, count: int) -> None:
        with self._lock:
            stats = self.signals[signal]
            stats.exported += count
            stats.requests_ok += 1
            self.last_success_at = time.time()

    def dropped(self, signal: str, reason: str, count: int) -> None:
        if count <= 0:
            return
        with self._lock:
            drops = self.signals[signal].dropped
            drops[reason] = drops.get(reason, 0) + count

    def request_failed(self, signal: str, message: str) -> None:
        with self._lock:
            self.signals[signal].requests_failed += 1
            self.last_error = message
            self.last_error_at = time.time()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                name: {
                    "recorded": s.recorded,
                    "exported": s.exported,
                    "dropped": s.dropped_total,
                    "dropped_by_reason": dict(s.dropped),
                    "pending": s.recorded - s.exported - s.dropped_total,
                    "requests_ok": s.requests_ok,
                    "requests_failed": s.requests_failed,
                }
                for name, s in self.signals.items()
            }

    def reset(self) -> None:
        """Start from zero (a forked child must not report its parent's numbers)."""
        with self._lock:
            for name in self.signals:
                self.signals[name] = SignalStats()
            self.last_error = self.last_error_at = self.last_success_at = None
