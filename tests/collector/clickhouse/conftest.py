"""chDB for the ClickHouse store tests: one data path for the whole run, a database per test.

chDB runs one embedded server per process, bound to the first data path it opens, so
every test of this process shares one path and isolates itself in its own database.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetryflow.collector.store.clickhouse._seam import ChdbConnection

_names = itertools.count()


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one data path of this process: the metric tests' engine's when they are here
    (whichever module opens chDB first fixes the path for all)."""
    try:
        from ch_metrics_support import engine  # type: ignore[import-not-found]
    except ImportError:
        return tmp_path_factory.mktemp("chdb")
    return Path(engine().path)


@pytest.fixture(scope="session")
def ch(chdb_path: Path) -> Iterator[ChdbConnection]:
    conn = ChdbConnection(str(chdb_path))
    yield conn
    conn.close()


@pytest.fixture
def database(ch: ChdbConnection) -> Iterator[str]:
    """A fresh database name; dropped after the test."""
    name = f"t{next(_names)}"
    yield name
    ch.command(f"DROP DATABASE IF EXISTS `{name}`")
