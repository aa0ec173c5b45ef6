"""Shared fixtures: a live OTLP receiver and throw-away TLS certificates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetryflow.testing._receiver import OTLPReceiver
from telemetryflow.testing._tls import TLSFiles, make_test_certificates


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    """A started loopback receiver on ephemeral ports, stopped after the test."""
    with OTLPReceiver() as rx:
        yield rx


@pytest.fixture
def tls_files(tmp_path: Path) -> TLSFiles:
    return make_test_certificates(tmp_path / "tls")
