"""Open the store a collector's configuration names: SQLite, chDB or a ClickHouse server.

The ClickHouse engines are imported only here and only for a ClickHouse URL, so the base
install (without the ``clickhouse`` extra) never needs them; without them the error
names the extra.
"""

from __future__ import annotations

from dataclasses import dataclass

from telemetryflow.collector.store._backend import Backend
from telemetryflow.collector.store._url import StoreURL, parse_store_url
from telemetryflow.collector.store.sqlite._backend import SqliteBackend
from telemetryflow.collector.store.sqlite._store import Store

__all__ = ["Opened", "StoreOpenError", "StoreSettings", "open_store", "store_url"]


class StoreOpenError(Exception):
    """The store could not be opened; the message names it (never its password)."""


@dataclass(frozen=True)
class StoreSettings:
    """The collector settings a store is opened with."""

    sync_full: bool = False
    max_pending_writes: int = 256
    retention_seconds: float = 0.0
    max_db_bytes: int = 0
    retention_interval: float = 60.0
    query_timeout: float = 30.0


@dataclass(frozen=True)
class Opened:
    """The backend, and the SQLite :class:`Store` behind it (``None`` for ClickHouse)."""

    backend: Backend
    sqlite: Store | None
    url: StoreURL


def store_url(store: str, db_path: str) -> StoreURL:
    """The store URL of a configuration: ``store`` if set, else ``sqlite:///db_path``."""
    return parse_store_url(store) if store else StoreURL("sqlite", path=db_path)


def open_store(url: StoreURL, settings: StoreSettings) -> Opened:
    """Open ``url``.

    Raises:
        ImportError: a ClickHouse URL without the ``clickhouse`` extra (the message
            names it).
        StoreOpenError: ClickHouse cannot be reached or refuses (its own message, with
            the password masked should it appear).
    """
    if url.kind == "sqlite":
        store = Store(
            url.path,
            sync_full=settings.sync_full,
            max_pending=settings.max_pending_writes,
            retention_seconds=settings.retention_seconds,
            max_db_bytes=settings.max_db_bytes,
            retention_interval=settings.retention_interval,
        )
        return Opened(SqliteBackend(store), store, url)
    from telemetryflow.collector.store.clickhouse._backend import ClickHouseBackend
    from telemetryflow.collector.store.clickhouse._seam import (
        ChdbConnection,
        ClickHouseConnection,
        ServerConnection,
    )

    ch: ClickHouseConnection | None = None
    try:
        if url.kind == "chdb":
            ch = ChdbConnection(url.path, max_execution_time=settings.query_timeout)
        else:
            ch = ServerConnection(url.host, url.port, url.username, url.password,
                                  url.tables.database, url.secure,
                                  max_execution_time=settings.query_timeout)  # fmt: skip
        backend = ClickHouseBackend(
            ch,
            url.tables,
            max_pending=settings.max_pending_writes,
            retention_seconds=settings.retention_seconds,
            deadline=settings.query_timeout,
        )
    except ImportError:
        raise
    except Exception as exc:  # the engines' errors have no common type
        if ch is not None:
            ch.close()
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if url.password:
            text = text.replace(url.password, "***")
        raise StoreOpenError(f"cannot open the store {url.masked()}: {text}") from None
    return Opened(backend, None, url)
