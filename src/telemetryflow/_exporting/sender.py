"""Deliver one encoded batch: rate limit, retries with backoff, and accounting.

Every item handed to :meth:`Sender.send` ends in exactly one bucket of
:class:`~telemetryflow._exporting.stats.Stats`: exported, dropped with a reason, or handed back
to its buffer (``Outcome.KEEP``) to be counted later.

Shutdown does not change the retry policy, only the time it has: from
:meth:`Sender.begin_shutdown` every batch gets its retries and backoff (or the
server's ``Retry-After``/``RetryInfo``) within the shutdown deadline, a backoff pause
under way is ended so that batch starts over at once, and a pause that would outlast
the deadline is not begun. At the deadline :meth:`Sender.stop` cuts attempts in flight.
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections.abc import Callable

from telemetryflow._exporting.forksafe import fork_safe_lock
from telemetryflow._exporting.ratelimit import RateLimiter
from telemetryflow._exporting.retry import RetryPolicy
from telemetryflow._exporting.stats import DropReason, Stats
from telemetryflow._exporting.transport import SendResult, Transport
from telemetryflow._recording.diagnostics import sdk_section, warn_throttled

__all__ = ["Outcome", "Sender"]


class Outcome(enum.Enum):
    """What became of a batch handed to :meth:`Sender.send`."""

    EXPORTED = "exported"
    DROPPED = "dropped"
    KEEP = "keep"


class _End(enum.Enum):
    """Why a batch's attempts stopped short of success."""

    EXHAUSTED = "the retry policy is used up"
    DEADLINE = "the deadline came, or the next try would pass it"
    REQUEUE = "shutdown began during our backoff: start over under its deadline"


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
        self._stop = threading.Event()  # the deadline has come: cut everything short
        self._wake = threading.Event()  # shutdown began (or stop): end backoff pauses
        self._closing = False
        self._closing_deadline: float | None = None
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
        may_requeue = keep and not self._closing  # begun before shutdown: may start over
        result = SendResult(ok=False, message="not attempted")
        end = _End.DEADLINE
        for attempt in range(1, self._policy.max_attempts + 1):
            timeout = self._attempt_timeout(deadline)
            if timeout is None:
                end = _End.DEADLINE
                break
            result = self._current_transport().send(signal, body, timeout)
            if result.ok:
                self._delivered(signal, items, result)
                return Outcome.EXPORTED
            self._stats.request_failed(signal, result.message)
            if not result.retryable:
                return self._refused(signal, items, result)
            if attempt == self._policy.max_attempts:
                end = _End.EXHAUSTED
                break
            paused = self._backoff(attempt, result, deadline, may_requeue)
            if paused is not None:
                end = paused
                break
        return self._undelivered(signal, items, result, end, keep, durable)

    def _limit(self, deadline: float | None) -> float | None:
        """The caller's deadline, or the shutdown deadline once shutdown has begun."""
        closing_at = self._closing_deadline if self._closing else None
        if closing_at is None:
            return deadline
        return closing_at if deadline is None else min(deadline, closing_at)

    def _attempt_timeout(self, deadline: float | None) -> float | None:
        """How long the next attempt may take; None when no time is left for one."""
        if self._stop.is_set():
            return None
        limit = self._limit(deadline)
        if limit is None:
            return self._timeout
        left = limit - time.monotonic()
        return min(self._timeout, left) if left > 0 else None

    def _backoff(
        self, attempt: int, result: SendResult, deadline: float | None, may_requeue: bool
    ) -> _End | None:
        """Wait before retry ``attempt``; None to go on, or why the retries end here.

        The server's delay is honoured to the end or not at all: when it outlasts the
        deadline the batch is given up at once, without sleeping toward the deadline.
        Shutdown interrupts our own backoff, so a batch pausing when it begins is
        tried again now, under the shutdown deadline.
        """
        delay = self._policy.delay(attempt, result.retry_after)
        wake_at = time.monotonic() + delay
        if self._too_late(wake_at, deadline):
            return _End.DEADLINE
        if not (self._stop if self._closing else self._wake).wait(delay):
            return None
        if self._stop.is_set():
            return _End.DEADLINE
        if result.retry_after is None:  # shutdown began during our own backoff
            return _End.REQUEUE if may_requeue else None
        if self._too_late(wake_at, deadline):
            return _End.DEADLINE
        return _End.DEADLINE if self._stop.wait(max(0.0, wake_at - time.monotonic())) else None

    def _too_late(self, when: float, deadline: float | None) -> bool:
        limit = self._limit(deadline)
        return limit is not None and when >= limit

    def _refused(self, signal: str, items: int, result: SendResult) -> Outcome:
        self._stats.dropped(signal, DropReason.NON_RETRYABLE, items)
        warn_throttled(
            f"final:{signal}:{result.message}",
            "dropped %d %s: the collector answered %s (not retryable)",
            items,
            signal,
            result.message,
        )
        return Outcome.DROPPED

    def _undelivered(
        self,
        signal: str,
        items: int,
        result: SendResult,
        end: _End,
        keep: bool,
        durable: bool,
    ) -> Outcome:
        """Keep the batch for a later round, or count it dropped with the right reason."""
        closing = self._closing or self._stop.is_set()
        if durable or end is _End.REQUEUE or (keep and self._policy.enabled and not closing):
            warn_throttled(
                f"keep:{signal}",
                "%s export failing (%s); keeping data buffered and retrying",
                signal,
                result.message,
            )
            return Outcome.KEEP
        if closing and end is _End.DEADLINE:
            reason, why = DropReason.SHUTDOWN_DEADLINE, "at the shutdown deadline"
        else:
            reason, why = DropReason.RETRIES_EXHAUSTED, "after export failures"
        self._stats.dropped(signal, reason, items)
        warn_throttled(
            f"{reason}:{signal}", "dropped %d %s %s: %s", items, signal, why, result.message
        )
        return Outcome.DROPPED

    def _delivered(self, signal: str, items: int, result: SendResult) -> None:
        """Count an accepted request; a partial success counts what the server refused.

        A server's claim is bounded by what the request carried (0 <= rejected <=
        items), so no answer can make ``exported`` shrink or exceed what was sent.
        """
        claimed = result.rejected
        rejected = min(max(claimed, 0), items)
        self._stats.exported(signal, items - rejected)
        self._stats.dropped(signal, DropReason.PARTIAL_REJECTION, rejected)
        if claimed or result.message:
            shown = "" if claimed == rejected else f" (it claimed {claimed})"
            warn_throttled(
                f"partial:{signal}",
                "collector rejected %d of %d %s%s: %s",
                rejected,
                items,
                signal,
                shown,
                result.message or "no message",
            )

    def pause_after_failure(self, round_number: int) -> float:
        """How long a queue waits before retrying a batch it kept (grows per round)."""
        return self._policy.delay(max(1, round_number))

    def begin_shutdown(self, deadline: float) -> None:
        """From now on every send ends by ``deadline`` (monotonic seconds).

        Each batch still gets the whole retry policy within it; what the policy or the
        deadline cannot deliver is dropped (``retries_exhausted``/``shutdown_deadline``)
        instead of being kept for a round that will never come.
        """
        self._closing_deadline = deadline
        self._closing = True
        self._wake.set()

    def stop(self) -> None:
        """Interrupt backoff and rate-limit waits and cut attempts in flight short."""
        self._stop.set()
        self._wake.set()
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
