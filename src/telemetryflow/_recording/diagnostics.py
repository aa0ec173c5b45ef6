"""Self-diagnostics: throttled warnings, and a guard so the SDK never observes itself.

The SDK reports its own trouble on the ``telemetryflow`` logger. During an outage the
same failure repeats thousands of times; one line per episode is enough, so warnings
are throttled per key. While SDK code runs on a thread, :func:`in_sdk` is true, which
lets the logging bridge ignore records the SDK (or the libraries it calls) emits and
so never recurse into itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from telemetryflow._exporting.forksafe import fork_safe_lock

__all__ = ["in_sdk", "logger", "sdk_section", "warn_throttled"]

logger = logging.getLogger("telemetryflow")

_THROTTLE_SECONDS = 60.0
_lock = fork_safe_lock()
_last_warned: dict[str, float] = {}
_suppressed: dict[str, int] = {}
_local = threading.local()


def warn_throttled(key: str, message: str, *args: object) -> None:
    """Log ``message`` at WARNING at most once a minute per ``key``, never a traceback."""
    now = time.monotonic()
    with _lock:
        last = _last_warned.get(key)
        if last is not None and now - last < _THROTTLE_SECONDS:
            _suppressed[key] = _suppressed.get(key, 0) + 1
            return
        _last_warned[key] = now
        repeated = _suppressed.pop(key, 0)
    suffix = f" (repeated {repeated} times since the last report)" if repeated else ""
    with sdk_section():
        logger.warning(message + suffix, *args)


def reset_throttle() -> None:
    """Forget what was warned (tests, and a new process after fork)."""
    with _lock:
        _last_warned.clear()
        _suppressed.clear()


def in_sdk() -> bool:
    """True while the current thread runs SDK export or diagnostics code."""
    return bool(getattr(_local, "depth", 0))


@contextmanager
def sdk_section() -> Iterator[None]:
    """Mark the current thread as running SDK code (see :func:`in_sdk`)."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


def mark_sdk_thread() -> None:
    """Mark a thread the SDK owns for its whole life (exporter workers)."""
    _local.depth = 1
