"""One upstream's own path: bounded memory queue → spool on disk → the SDK's sender.

Everything here runs on the upstream's own two threads, so a slow or dead upstream
holds up nothing but itself:

* :meth:`UpstreamLink.offer` (the receiver's thread) appends an encoded request to a
  memory queue bounded in bytes and returns at once; past the bound the request is
  dropped and counted (``queue_full``).
* the spooler thread merges queued requests of one signal into one request (the
  protobuf encoding of a message whose only field is a repeated one is the
  concatenation of its parts, so merging is joining bytes) up to
  ``max_request_bytes`` and commits it to this upstream's spool (the SDK's
  persistent buffer), which is bounded too;
* the SDK's :class:`~telemetryflow._exporting.spool.SpoolDrainer` sends the oldest stored
  request through the SDK's :class:`~telemetryflow._exporting.sender.Sender` (retries with
  backoff, every item accounted in :class:`~telemetryflow._exporting.stats.Stats`) and removes
  it once the upstream accepted it or refused it for good. A request that keeps
  failing stays on disk and is tried again, oldest first, until it goes through.

A collector stopped with requests pending leaves them in the spool; the next one
with the same data directory adopts and sends them.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from telemetryflow._exporting.retry import RetryPolicy
from telemetryflow._exporting.sender import Sender
from telemetryflow._exporting.spool import Spool, SpoolDrainer
from telemetryflow._exporting.stats import DropReason, Stats
from telemetryflow.collector.forward._upstream import Upstream

__all__ = ["LinkLimits", "UpstreamLink"]

_log = logging.getLogger("telemetryflow.collector.forward")
_MIB = 1024 * 1024
_RETRY = RetryPolicy(max_retries=3, initial_backoff=0.5, max_backoff=5.0)


@dataclass(frozen=True)
class LinkLimits:
    """The bounds and timings of every upstream's path."""

    queue_bytes: int = 64 * _MIB
    """Encoded requests held in memory per upstream, waiting to be spooled."""
    spool_bytes: int = 1024 * _MIB
    """Disk budget of each upstream's spool; past it new requests are dropped, counted."""
    max_request_bytes: int = 4 * _MIB
    """Largest merged request sent upstream (a larger single request goes alone)."""
    timeout: float = 10.0
    """Seconds one attempt may take."""
    retry: RetryPolicy = field(default_factory=lambda: _RETRY)
    """Backoff between attempts, and between rounds of a request kept on disk."""


class UpstreamLink:
    """The queue, spool, sender and accounting of one upstream."""

    def __init__(
        self,
        upstream: Upstream,
        headers: Mapping[str, str],
        spool_dir: Path,
        limits: LinkLimits,
    ) -> None:
        self.upstream = upstream
        self._secrets = [v for v in upstream.headers(headers).values() if v]
        self._limits = limits
        self.stats = Stats()
        self._queue: deque[tuple[str, bytes, int]] = deque()
        self._queued_bytes = 0
        self._cond = threading.Condition(threading.Lock())
        self._closing = False
        self._sender = Sender(
            lambda: upstream.transport(headers, limits.timeout),
            limits.retry,
            limits.timeout,
            self.stats,
        )
        self.spool = Spool(str(spool_dir), "forward", limits.spool_bytes)
        self._backlog_reported = self.spool.backlog_items()
        self._drainer = SpoolDrainer(self.spool, self._sender, self.stats)
        self._spooler = threading.Thread(
            target=self._spool_loop, name="tf-forward-spool", daemon=True
        )
        self._spooler.start()

    # -- the receiver's side: never blocks ----------------------------------------
    def offer(self, signal: str, body: bytes, items: int) -> None:
        """Queue one accepted request for this upstream, or count it dropped."""
        with self._cond:
            if self._closing or self._queued_bytes + len(body) > self._limits.queue_bytes:
                self.stats.refused(signal, DropReason.QUEUE_FULL, items)
                return
            self.stats.recorded(signal, items)
            self._queue.append((signal, body, items))
            self._queued_bytes += len(body)
            self._cond.notify()

    # -- the spooler thread --------------------------------------------------------
    def _spool_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait(1.0)
                if not self._queue:
                    return  # closing and nothing left to keep
                taken = self._take_locked()
            for signal, bodies, items in taken:
                self._store(signal, b"".join(bodies), items)

    def _take_locked(self) -> list[tuple[str, list[bytes], int]]:
        """Queued requests grouped into merged requests of one signal, in order."""
        merged: list[tuple[str, list[bytes], int]] = []
        open_for: dict[str, int] = {}  # signal -> index of its merge still growing
        sizes: dict[int, int] = {}
        budget = 4 * self._limits.max_request_bytes  # one round's work, then re-check
        while self._queue and budget > 0:
            signal, body, items = self._queue.popleft()
            self._queued_bytes -= len(body)
            budget -= len(body)
            index = open_for.get(signal)
            if index is not None and sizes[index] + len(body) <= self._limits.max_request_bytes:
                name, bodies, count = merged[index]
                bodies.append(body)
                merged[index] = (name, bodies, count + items)
                sizes[index] += len(body)
                continue
            open_for[signal] = len(merged)
            sizes[len(merged)] = len(body)
            merged.append((signal, [body], items))
        return merged

    def _store(self, signal: str, body: bytes, items: int) -> None:
        try:
            stored = self.spool.append(signal, body, items)
        except sqlite3.Error as exc:
            _log.warning("forward to %s: cannot write its buffer: %s", self.upstream.display, exc)
            stored = False
        if not stored:
            self.stats.dropped(signal, DropReason.QUEUE_FULL, items)

    # -- status and lifecycle --------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Delivered, pending and dropped items, and the last error, safe to show."""
        snap = self.stats.snapshot()
        delivered = sum(s["exported"] for s in snap.values())
        dropped = sum(s["dropped"] for s in snap.values())
        by_reason: dict[str, int] = {}
        for s in snap.values():
            for reason, count in s["dropped_by_reason"].items():
                by_reason[reason] = by_reason.get(reason, 0) + count
        pending = sum(s["pending"] for s in snap.values()) + self.spool.backlog_items()
        return {
            "upstream": self.upstream.display,
            "protocol": self.upstream.protocol,
            "tls": self.upstream.tls,
            "delivered": delivered,
            "pending": pending,
            "dropped": dropped,
            "dropped_by_reason": by_reason,
            "last_error": self._redact(self.stats.last_error),
            "last_error_at": _iso(self.stats.last_error_at),
            "last_success_at": _iso(self.stats.last_success_at),
        }

    def _redact(self, text: str | None) -> str | None:
        if text is None:
            return None
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def close_intake(self) -> None:
        """Accept nothing more; the spooler commits what is queued, then ends."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def spooled(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the spooler to end; True once it has."""
        self._spooler.join(max(timeout, 0.0))
        return not self._spooler.is_alive()

    def idle(self) -> bool:
        """Nothing queued or stored: everything offered was delivered or dropped."""
        return not self._spooler.is_alive() and self.spool.pending_items() == 0

    def halt(self, timeout: float) -> None:
        """Cut sending short and release the spool; what is left stays on disk."""
        self._sender.stop()
        self._drainer.stop(timeout=timeout)
        self.spool.close()
        self._sender.close()


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds")
