"""What a running client owes the process: global providers, fork hooks and exit.

Kept apart from the client core because none of it records anything: it decides
whether the first client becomes the OpenTelemetry global providers, re-arms a client
in a forked child, and shuts forgotten clients down at interpreter exit within a
few seconds.
"""

from __future__ import annotations

import atexit
import os
import weakref
from typing import TYPE_CHECKING, Protocol

from opentelemetry import _logs as otel_logs
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace

from telemetryflow._recording.diagnostics import logger

if TYPE_CHECKING:  # the export path loads on initialize(), not on import
    from telemetryflow._exporting.pipeline import Pipeline

__all__ = ["install_globals", "register_atexit", "register_fork_handler"]

_ATEXIT_TIMEOUT = 5.0


class _Running(Protocol):
    """The part of a client these hooks call."""

    def shutdown(self, timeout: float = 30.0) -> None: ...

    def _after_fork(self) -> None: ...


def install_globals(pipeline: Pipeline) -> bool:
    """Become the process-wide providers where nobody has claimed them yet."""
    installed = False
    if pipeline.tracer_provider is not None and isinstance(
        otel_trace.get_tracer_provider(), otel_trace.ProxyTracerProvider
    ):
        otel_trace.set_tracer_provider(pipeline.tracer_provider)
        installed = True
    if (
        pipeline.meter_provider is not None
        and type(otel_metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
    ):
        otel_metrics.set_meter_provider(pipeline.meter_provider)
        installed = True
    if (
        pipeline.logger_provider is not None
        and type(otel_logs.get_logger_provider()).__name__ == "ProxyLoggerProvider"
    ):
        otel_logs.set_logger_provider(pipeline.logger_provider)
        installed = True
    return installed


def register_fork_handler(client: _Running) -> None:
    if not hasattr(os, "register_at_fork") or getattr(client, "_fork_hook", False):
        return
    client._fork_hook = True  # type: ignore[attr-defined]
    ref = weakref.ref(client)

    def after_in_child() -> None:
        alive = ref()
        if alive is not None:
            try:
                alive._after_fork()
            except Exception as exc:
                logger.warning("telemetryflow after fork: %s: %s", type(exc).__name__, exc)

    os.register_at_fork(after_in_child=after_in_child)


_live_clients: weakref.WeakSet[_Running] = weakref.WeakSet()
_atexit_registered = False


def register_atexit(client: _Running) -> None:
    global _atexit_registered
    _live_clients.add(client)
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_shutdown_live_clients)


def _shutdown_live_clients() -> None:
    """A forgotten ``shutdown()`` loses nothing when the collector is up, and exit
    never waits more than a few seconds when it is not."""
    for client in list(_live_clients):
        client.shutdown(timeout=_ATEXIT_TIMEOUT)
