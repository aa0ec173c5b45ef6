"""A ClickHouse query past the deadline is stopped by the engine and answered 422."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetryflow.collector.store.clickhouse._backend import ClickHouseBackend
from telemetryflow.collector.store.clickhouse._seam import ChdbConnection
from telemetryflow.collector.store.clickhouse._tables import Tables

BadRequestError = pytest.importorskip("telemetryflow.collector.ingest._decode").BadRequestError


def test_the_engine_stops_a_query_past_the_deadline(chdb_path: Path, database: str) -> None:
    conn = ChdbConnection(str(chdb_path), max_execution_time=1)
    backend = ClickHouseBackend(conn, Tables(database=database), deadline=1)
    try:
        with pytest.raises(BadRequestError) as caught:
            backend._read("logs", lambda: conn.query("SELECT sum(number) FROM numbers(1e12)"))
        assert caught.value.status == 422
        assert "narrow its time range" in caught.value.message  # not a sum: stopped
    finally:
        backend.close()
