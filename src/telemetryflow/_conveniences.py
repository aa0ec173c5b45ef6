"""Conveniences on top of the core client (track, events, error capture, flags).

A mixin so that these features live in their own modules while the client stays
one object for the user.
"""

from __future__ import annotations

__all__ = ["ConveniencesMixin"]


class ConveniencesMixin:
    """Methods added to :class:`~telemetryflow.TelemetryFlowClient`."""
