"""The process-wide default client used by the module-level conveniences.

The default is the client set explicitly with :func:`set_default_client`, otherwise
the one most recently initialized. When there is none, the module-level functions do
nothing: importing and decorating must never fail because telemetry is not set up.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from telemetryflow._extras.protocol import ClientLike

__all__ = ["client_initialized", "client_stopped", "get_default_client", "set_default_client"]

_lock = threading.Lock()
_explicit: ClientLike | None = None
_latest: ClientLike | None = None


def set_default_client(client: ClientLike | None) -> None:
    """Use ``client`` for ``telemetryflow.track``/``trace``/``event`` (None to unset)."""
    global _explicit
    with _lock:
        _explicit = client


def get_default_client() -> ClientLike | None:
    """The explicit default if running, else the most recently initialized client."""
    for candidate in (_explicit, _latest):
        if candidate is not None and candidate.is_initialized():
            return candidate
    return None


def client_initialized(client: ClientLike) -> None:
    global _latest
    with _lock:
        _latest = client


def client_stopped(client: ClientLike) -> None:
    global _latest, _explicit
    with _lock:
        if _latest is client:
            _latest = None
        if _explicit is client:
            _explicit = None
