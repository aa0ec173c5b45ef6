"""A token bucket for export requests per minute, shared by all signals of a client."""

from __future__ import annotations

import time

from telemetryflow._exporting.forksafe import fork_safe_lock

__all__ = ["RateLimiter"]


class RateLimiter:
    """``per_minute`` requests per minute, with a burst of a tenth of that (at least 1).

    A small burst lets a flush of all three signals through at once while the
    per-minute ceiling still holds over any longer stretch.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._capacity = max(1.0, per_minute / 10.0)
        self._tokens = self._capacity
        self._updated = time.monotonic()
        self._lock = fork_safe_lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def try_acquire(self) -> float:
        """Take a token: 0.0 if granted, otherwise seconds until one is available."""
        with self._lock:
            now = time.monotonic()
            self._refill(now)
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self._rate
