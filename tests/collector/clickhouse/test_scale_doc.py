"""docs/scale.md: its OpenTelemetry Collector configuration agrees with itself and with us."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from telemetryflow.collector.store._url import parse_store_url
from telemetryflow.collector.store.clickhouse._tables import Tables

DOC = Path(__file__).resolve().parents[3] / "docs" / "scale.md"


def test_the_collector_configuration_is_consistent_with_our_defaults() -> None:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    config = yaml.safe_load(blocks[0])
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics", "logs"}
    for pipeline in pipelines.values():
        assert set(pipeline["receivers"]) <= set(config["receivers"])
        assert set(pipeline["processors"]) <= set(config["processors"])
        assert pipeline["exporters"] == ["clickhouse"]
    exporter = config["exporters"]["clickhouse"]
    defaults = Tables()
    assert exporter["database"] == defaults.database
    assert exporter["traces_table_name"] == defaults.traces
    assert exporter["logs_table_name"] == defaults.logs
    assert exporter["password"].startswith("${env:")  # never a literal password


def test_every_store_url_in_the_doc_parses() -> None:
    text = DOC.read_text(encoding="utf-8")
    urls = re.findall(r"`((?:sqlite|chdb|clickhouses?)://[^`\s']+)", text)
    assert len(urls) >= 4
    for url in urls:
        parse_store_url(url.replace("…", "pw"))
