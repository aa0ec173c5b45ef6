"""Locks that a forked child gets back unlocked.

``fork()`` copies a lock in whatever state it is, but not the thread that held it:
a lock an export thread held at that instant stays held forever in the child, and
the child's first export (or its ``shutdown()``) waits on it for good. Pre-fork
servers fork while the parent exports, so every lock an SDK thread takes in the
parent is made with :func:`fork_safe_lock`, and released in each new child.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref

__all__ = ["fork_safe_lock"]

_locks: weakref.WeakSet[threading.Lock] = weakref.WeakSet()


def fork_safe_lock() -> threading.Lock:
    """A ``threading.Lock`` that is released in a child forked while it was held."""
    lock = threading.Lock()
    _locks.add(lock)
    return lock


def _release_in_child() -> None:
    # The child has one thread, the one that called fork(): no holder of these
    # locks is alive here, so releasing them is safe.
    for lock in list(_locks):
        if lock.locked():
            with contextlib.suppress(RuntimeError):
                lock.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_release_in_child)
