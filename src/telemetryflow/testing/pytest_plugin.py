"""pytest fixtures for applications that use TelemetryFlow.

Enabled automatically when telemetryflow is installed (a ``pytest11`` entry point):

    def test_checkout(telemetry):
        telemetry.client.increment_counter("orders")
        assert telemetry.find_metric("orders") is not None

pytest loads this module in every project of the environment, used or not, so it
imports nothing but pytest at load time: the SDK is imported when a test asks for
the fixture, and a plain ``pip install telemetryflow`` never breaks a test run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from telemetryflow.testing._memory import TelemetryCapture


@pytest.fixture
def telemetry() -> Iterator[TelemetryCapture]:
    """A client whose telemetry is captured in memory; shut down after the test."""
    from telemetryflow.testing._memory import capture

    with capture() as captured:
        yield captured
