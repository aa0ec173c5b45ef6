"""Where a forwarding collector keeps its spool: beside its store, whichever it is.

A chDB store is a directory: the spool lives beside it (``DIR.forward``), not beside
``--db``'s file, which such a collector never opens.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from telemetryflow.collector import Collector
from telemetryflow.collector.forward import resolve_forward
from telemetryflow.testing import OTLPReceiver


@pytest.fixture
def chdb_spool(chdb_path: Path) -> Iterator[Path]:
    """The spool beside the chDB directory, removed after the test (no backlog left for
    the next collector of this process to resume)."""
    spool = chdb_path.with_name(chdb_path.name + ".forward")
    shutil.rmtree(spool, ignore_errors=True)
    yield spool
    shutil.rmtree(spool, ignore_errors=True)


def test_a_chdb_store_keeps_its_forward_spool_beside_its_directory(
    make_collector: Callable[..., Collector],
    chdb_path: Path,
    database: str,
    chdb_spool: Path,
    tmp_path: Path,
) -> None:
    db = tmp_path / "unused.db"
    with OTLPReceiver() as upstream:
        collector = make_collector(
            db_path=str(db),
            store=f"chdb://{chdb_path}?database={database}",
            forward=resolve_forward((upstream.http_endpoint,), (), environ={}),
        )
        collector.stop()
    assert chdb_spool.is_dir()
    assert len(list(chdb_spool.iterdir())) == 1  # one directory per upstream
    assert not db.with_name(db.name + ".forward").exists()
    assert not db.exists()
