"""Process-wide limits the collector sets at start: file descriptors and large buffers.

A connection costs a file descriptor, and so does every database file the store
opens. The usual soft limit (1,024) lets a few hundred idle connections starve the
database and the other receiver, so :func:`raise_fd_limit` raises it toward the
hard limit and :func:`connection_caps` shares what there is between the receivers,
keeping a reserve for everything else.

:func:`return_large_buffers_to_the_os` makes glibc serve large allocations (request
bodies, inflated bodies) with ``mmap``, so their memory goes back to the system when
a burst of big requests is over instead of staying in the allocator's heap.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import sys
import threading

__all__ = [
    "connection_caps",
    "fd_reserve",
    "raise_fd_limit",
    "return_free_memory_to_the_os",
    "return_large_buffers_to_the_os",
]

_log = logging.getLogger("telemetryflow.collector")

_FD_TARGET = 65_536
"""Raise the soft limit to at most this (an unlimited hard limit is not asked for)."""
_FD_BASE = 64
"""Descriptors kept for the writer's database files, logs, pipes and listening sockets."""
FD_PER_READER = 3
"""A SQLite read connection holds the database file, its WAL and its shared-memory index."""
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 20
_malloc_lock = threading.Lock()
_malloc_tuned = False
_libc: ctypes.CDLL | None = None


def raise_fd_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` toward the hard limit; return the soft limit.

    Never lowers it. Where the platform has no such limit, returns a large number.
    """
    try:
        import resource
    except ImportError:  # not a POSIX system
        return _FD_TARGET
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = _FD_TARGET if hard == resource.RLIM_INFINITY else min(hard, _FD_TARGET)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        except (ValueError, OSError) as exc:
            _log.debug("cannot raise the open-file limit: %s", exc)
    return _FD_TARGET if soft == resource.RLIM_INFINITY else int(soft)


def fd_reserve(reader_threads: int) -> int:
    """Descriptors not given to connections: the base plus every thread's reader.

    Read connections are pooled, so the pool grows to as many as there are threads
    reading at once: the HTTP workers (queries, status, listings) plus the queries the
    web view runs on its own threads, which the query gate bounds (gRPC only writes).
    """
    return _FD_BASE + FD_PER_READER * reader_threads


def connection_caps(configured: int, fd_limit: int, receivers: int, reader_threads: int) -> int:
    """Connections each receiver may hold: the configured cap, lowered to fit ``fd_limit``
    after :func:`fd_reserve` for ``reader_threads``."""
    share = max(8, (fd_limit - fd_reserve(reader_threads)) // max(1, receivers))
    if share < configured:
        _log.warning(
            "open-file limit %d allows %d connections per receiver (asked for %d)",
            fd_limit,
            share,
            configured,
        )
    return min(configured, share)


def return_large_buffers_to_the_os() -> None:
    """Serve allocations of 1 MiB and more with ``mmap`` (glibc only; once per process).

    glibc raises its mmap threshold after the first large block is freed, so later
    large bodies come from the heap and a burst leaves the process holding their
    memory. Setting the threshold explicitly turns that adjustment off.
    """
    global _malloc_tuned
    with _malloc_lock:
        if _malloc_tuned:
            return
        _malloc_tuned = True
        libc = _glibc()
        if libc is not None:
            with contextlib.suppress(AttributeError):
                libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)


def return_free_memory_to_the_os() -> None:
    """Give the allocator's free pages back to the system (glibc's ``malloc_trim``).

    Called after a burst of large requests is over: the many small objects a big
    export is parsed into are freed, but without a trim their pages stay with the
    process.
    """
    libc = _glibc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        name = ctypes.util.find_library("c")
        if name:
            with contextlib.suppress(OSError):
                _libc = ctypes.CDLL(name)
    return _libc
