"""pytest fixtures for applications that use TelemetryFlow.

Enabled automatically when telemetryflow is installed (a ``pytest11`` entry point):

    def test_checkout(telemetry):
        telemetry.client.increment_counter("orders")
        assert telemetry.find_metric("orders") is not None
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from telemetryflow.testing._memory import TelemetryCapture, capture


@pytest.fixture
def telemetry() -> Iterator[TelemetryCapture]:
    """A client whose telemetry is captured in memory; shut down after the test."""
    with capture() as captured:
        yield captured
