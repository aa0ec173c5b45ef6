"""Fixtures for the collector tests: live collectors on free loopback ports."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from collector_helpers import KEY_A, KEY_B, SRC, headers_for

from telemetryflow.collector import Collector, CollectorConfig


@pytest.fixture
def make_collector(tmp_path: Path) -> Iterator[Callable[..., Collector]]:
    """Start collectors on free loopback ports; each is stopped after the test."""
    started: list[Collector] = []

    def factory(**overrides: Any) -> Collector:
        settings: dict[str, Any] = {
            "db_path": str(tmp_path / f"c{len(started)}.db"),
            "grpc_port": 0,
            "http_port": 0,
            "keys": (KEY_A, KEY_B),
            "rate_limit": 0.0,
        }
        settings.update(overrides)
        collector = Collector(CollectorConfig(**settings)).start()
        started.append(collector)
        return collector

    yield factory
    for collector in started:
        collector.stop()


@pytest.fixture
def collector(make_collector: Callable[..., Collector]) -> Collector:
    return make_collector()


@pytest.fixture
def http(collector: Collector) -> Iterator[httpx.Client]:
    """An httpx client on the collector's HTTP port, authenticated as KEY_A."""
    with httpx.Client(
        base_url=collector.http_endpoint, headers=headers_for(KEY_A), timeout=10
    ) as client:
        yield client


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env
