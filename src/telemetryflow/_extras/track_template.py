"""What every call of one ``track``-decorated function shares.

A tracked call needs the client's tracer (and its light span factory), its metric
recorder and the histogram series of its ``completed`` durations. Looking each up per
call costs two ``os.getpid()`` system calls and a cache lookup; a decorated function
keeps them in a :class:`Template` instead, checked per call against the client, its
pipeline and the process, and renewed when any differs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from telemetryflow._recording.instruments import Bound
from telemetryflow._recording.light_spans import LightTracer

if TYPE_CHECKING:
    from telemetryflow._extras.protocol import ClientLike

__all__ = ["Resolved", "Template"]


class Resolved:
    """What every call of one decorated function gets from one client in one process:
    its tracer (and light span factory), its metric recorder, and, once the first
    ``completed`` duration has bound it, that series. Replaced as a whole, never
    changed in place (but for ``bound``, set once), so threads share it safely."""

    __slots__ = ("bound", "client", "factory", "pid", "pipeline", "recorder", "tracer")

    def __init__(self, client: ClientLike) -> None:
        self.pid = os.getpid()
        self.client = client
        self.pipeline = client._pipeline
        tracer = client.tracer
        self.tracer = tracer
        self.factory = tracer._factory if type(tracer) is LightTracer else None
        self.recorder = client._recorder()
        self.bound: Bound | None = None


class Template:
    """A decorated function's :class:`Resolved`, renewed when the client, its
    pipeline (a new ``initialize()``) or the process (a fork) is not the same."""

    __slots__ = ("resolved",)

    def __init__(self) -> None:
        self.resolved: Resolved | None = None

    def of(self, client: ClientLike) -> Resolved:
        found = self.resolved
        if (
            found is None
            or found.client is not client
            or found.pipeline is not client._pipeline
            or found.pid != os.getpid()
        ):
            found = self.resolved = Resolved(client)
        return found
