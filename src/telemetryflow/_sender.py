"""Deliver one encoded batch: rate limit, retries with backoff, and accounting.

Every item handed to :meth:`Sender.send` ends in exactly one bucket of
:class:`~telemetryflow._stats.Stats`: exported, or dropped with a reason. Backoff
sleeps wait on the stop event, so ``shutdown()`` interrupts them instead of waiting.
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections.abc import Callable

from telemetryflow._diagnostics import sdk_section, warn_throttled
from telemetryflow._forksafe import fork_safe_lock
from telemetryflow._ratelimit import RateLimiter
from telemetryflow._retry import RetryPolicy
from telemetryflow._stats import DropReason, Stats
from telemetryflow._transport import SendResult, Transport

__all__ = ["Outcome", "Sender"]

_SHUTDOWN_RETRY_DELAY = 0.25


class Outcome(enum.Enum):
    """What became of a batch handed to :meth:`Sender.send`."""

    EXPORTED = "exported"
    DROPPED = "dropped"
    KEEP = "keep"


class Sender:
    """One per client; safe to call from the three export threads at once."""

    def __init__(
        self,
        transport_factory: Callable[[], Transport],
        policy: RetryPolicy,
        timeout: float,
        stats: Stats,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._factory = transport_factory
        self._policy = policy
        self._timeout = timeout
        self._stats = stats
        self._limiter = limiter
        self._stop = threading.Event()
        self._closing = False
        self._lock = fork_safe_lock()  # held briefly by export threads at any fork
        self._transport: Transport | None = None
        self._pid = os.getpid()

    @property
    def limiter(self) -> RateLimiter | None:
        return self._limiter

    def _current_transport(self) -> Transport:
        """The transport of this process: a forked child never reuses its parent's."""
        with self._lock:
            pid = os.getpid()
            if self._transport is None or pid != self._pid:
                self._transport = self._factory()
                self._pid = pid
            return self._transport

    def wait_for_rate(self, deadline: float | None) -> bool:
        """Block until the rate limiter grants a request; False if the deadline or stop
        comes first."""
        if self._limiter is None:
            return True
        while True:
            wait = self._limiter.try_acquire()
            if wait == 0.0:
                return True
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return False
            if self._stop.wait(wait):
                return False

    def send(
        self,
        signal: str,
        body: bytes,
        items: int,
        deadline: float | None = None,
        *,
        keep_on_failure: bool = False,
        count_recorded: bool = False,
        durable: bool = False,
    ) -> Outcome:
        """Deliver ``items`` encoded in ``body`` and account for every one.

        With ``keep_on_failure``, a batch that still fails with a retryable error
        after its retries is not dropped: the caller keeps it (``Outcome.KEEP``) and
        tries again later, so an outage costs nothing while the buffer has room.
        """
        with sdk_section():
            outcome = self._send(signal, body, items, deadline, keep_on_failure, durable)
        if count_recorded and outcome is not Outcome.KEEP:
            self._stats.recorded(signal, items)  # backlog of an earlier process
        return outcome

    def _send(
        self,
        signal: str,
        body: bytes,
        items: int,
        deadline: float | None,
        keep: bool,
        durable: bool = False,
    ) -> Outcome:
        result = SendResult(ok=False, message="not attempted")
        for attempt in range(1, self._policy.max_attempts + 1):
            timeout = self._timeout
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
                if timeout <= 0:
                    break
            result = self._current_transport().send(signal, body, timeout)
            if result.ok:
                self._delivered(signal, items, result)
                return Outcome.EXPORTED
            self._stats.request_failed(signal, result.message)
            if not result.retryable:
                self._stats.dropped(signal, DropReason.NON_RETRYABLE, items)
                warn_throttled(
                    f"final:{signal}:{result.message}",
                    "dropped %d %s: the collector answered %s (not retryable)",
                    items,
                    signal,
                    result.message,
                )
                return Outcome.DROPPED
            if attempt == self._policy.max_attempts:
                break
            delay = self._policy.delay(attempt, result.retry_after)
            if self._closing:
                # Shutting down: one quick retry for a blip, not a full backoff schedule.
                if attempt >= 2:
                    break
                delay = min(delay, _SHUTDOWN_RETRY_DELAY)
            if deadline is not None and time.monotonic() + delay >= deadline:
                break
            if self._stop.wait(delay):
                break
        closing = self._stop.is_set() or self._closing
        if durable or (keep and self._policy.enabled and not closing):
            warn_throttled(
                f"keep:{signal}",
                "%s export failing (%s); keeping data buffered and retrying",
                signal,
                result.message,
            )
            return Outcome.KEEP
        reason = DropReason.SHUTDOWN if closing else DropReason.RETRIES_EXHAUSTED
        self._stats.dropped(signal, reason, items)
        warn_throttled(
            f"retry:{signal}",
            "dropped %d %s after export failures: %s",
            items,
            signal,
            result.message,
        )
        return Outcome.DROPPED

    def _delivered(self, signal: str, items: int, result: SendResult) -> None:
        self._stats.exported(signal, items - result.rejected)
        if result.rejected:
            self._stats.dropped(signal, DropReason.PARTIAL_REJECTION, result.rejected)
            warn_throttled(
                f"partial:{signal}",
                "collector rejected %d of %d %s: %s",
                result.rejected,
                items,
                signal,
                result.message,
            )

    def pause_after_failure(self, round_number: int) -> float:
        """How long a queue waits before retrying a batch it kept (grows per round)."""
        return self._policy.delay(max(1, round_number))

    def begin_shutdown(self) -> None:
        """From now on, items that miss their deadline count as dropped at shutdown."""
        self._closing = True

    def stop(self) -> None:
        """Interrupt backoff and rate-limit waits and cut attempts in flight short."""
        self._stop.set()
        with self._lock:
            transport = self._transport if self._pid == os.getpid() else None
        if transport is not None:
            transport.abort()

    def close(self) -> None:
        self.stop()
        with self._lock:
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
