"""docs/collector.md: the OpenTelemetry Collector example is valid and self-consistent."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "collector.md"


def test_otel_collector_example_is_consistent() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    config = yaml.safe_load(blocks[0])
    service = config["service"]
    assert set(service["extensions"]) <= set(config["extensions"])
    assert set(service["pipelines"]) == {"traces", "metrics", "logs"}
    for pipeline in service["pipelines"].values():
        assert set(pipeline["receivers"]) <= set(config["receivers"])
        assert set(pipeline["processors"]) <= set(config["processors"])
        assert set(pipeline["exporters"]) <= set(config["exporters"])
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    for protocol in protocols.values():
        assert protocol["auth"]["authenticator"] in config["extensions"]
    token = config["extensions"]["bearertokenauth"]["token"]
    assert token == "${env:TELEMETRYFLOW_API_KEY_ID}:${env:TELEMETRYFLOW_API_KEY_SECRET}"
