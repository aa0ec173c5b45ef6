"""The collector: both receivers, the query API and the store, started and stopped together."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from telemetryflow.collector._config import CollectorConfig
from telemetryflow.collector._pipeline import Pipeline
from telemetryflow.collector.forward import Forwarder, spool_root
from telemetryflow.collector.query._gate import QueryGate
from telemetryflow.collector.server._auth import Authenticator, RateLimiter
from telemetryflow.collector.server._grpc import GrpcLimits, start_grpc_server
from telemetryflow.collector.server._http import HTTPLimits, create_app
from telemetryflow.collector.server._http_protocol import ConnectionLimits
from telemetryflow.collector.server._http_server import HTTPServer
from telemetryflow.collector.server._limits import (
    connection_caps,
    raise_fd_limit,
    return_large_buffers_to_the_os,
)
from telemetryflow.collector.store._backend import Backend
from telemetryflow.collector.store._open import StoreSettings, open_store, store_url
from telemetryflow.collector.store._url import StoreURL
from telemetryflow.collector.store.sqlite._store import Store
from telemetryflow.collector.web import close_live_tails

__all__ = ["Collector"]

_log = logging.getLogger("telemetryflow.collector")
_FORWARD_GRACE = 2.0
"""Seconds a stopping collector gives pending forwards before leaving them on disk."""


def _spool_root(url: StoreURL, db_path: str) -> Path:
    """Where forwarding spools live: beside the store's own file or directory
    (``DB.forward``, ``DIR.forward``); a server store has none here, so beside ``--db``'s
    path (``telemetryflow.db.forward`` by default), a file such a collector never opens."""
    return spool_root(url.path if url.kind in ("sqlite", "chdb") else db_path)


class Collector:
    """A local OTLP collector with a store (SQLite, or ClickHouse) and a query API.

    Example:
        >>> config = CollectorConfig(db_path="t.db", grpc_port=0, http_port=0, auth=False)
        >>> with Collector(config) as collector:  # doctest: +SKIP
        ...     print(collector.http_endpoint)

    ``start()`` binds both ports (``0`` picks free ones, see :attr:`grpc_port` and
    :attr:`http_port`); ``stop()`` stops accepting, lets requests in flight finish,
    commits everything acknowledged and closes the database.
    """

    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self._store: Store | None = None
        self._backend: Backend | None = None
        self._http: HTTPServer | None = None
        self._http_work: ThreadPoolExecutor | None = None
        self._grpc: Any = None
        self._pipeline: Pipeline | None = None
        self.grpc_port: int | None = None
        self.http_port: int = 0
        self._stopped = threading.Event()

    @property
    def store(self) -> Store:
        """The SQLite store (a collector over ClickHouse has none: see :attr:`backend`)."""
        if self._store is None:
            raise RuntimeError("the collector is not started, or its store is not SQLite")
        return self._store

    @property
    def backend(self) -> Backend:
        """The store the pipeline writes to and reads from, whichever engine it is."""
        if self._backend is None:
            raise RuntimeError("the collector is not started")
        return self._backend

    @property
    def http_endpoint(self) -> str:
        """Base URL of OTLP/HTTP and the query API, e.g. ``http://127.0.0.1:4318``."""
        host = self.config.http_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str | None:
        """``host:port`` of OTLP/gRPC, or ``None`` when disabled."""
        if self.grpc_port is None:
            return None
        return f"{self.config.grpc_host}:{self.grpc_port}"

    def start(self) -> Collector:
        cfg = self.config
        receivers = 1 if cfg.grpc_port is None else 2
        readers = cfg.http_workers + cfg.max_queries  # the web view reads only via queries
        max_connections = connection_caps(cfg.max_connections, raise_fd_limit(), receivers, readers)
        return_large_buffers_to_the_os()
        url = store_url(cfg.store, cfg.db_path)
        settings = StoreSettings(
            cfg.sync_full,
            cfg.max_pending_writes,
            cfg.retention_seconds,
            cfg.max_db_bytes,
            cfg.retention_interval,
            cfg.query_timeout,
        )
        opened = open_store(url, settings)
        self._backend, self._store = opened.backend, opened.sqlite
        gate = QueryGate(cfg.max_queries, cfg.max_queries_per_key, cfg.query_timeout)
        pipeline = Pipeline(
            self._backend,
            # without keys every caller is the store's default project: the one the
            # OpenTelemetry Collector exporter's rows belong to (``default_project=``)
            Authenticator(cfg.keys, cfg.auth, anonymous_project=url.tables.default_project),
            RateLimiter(cfg.rate_limit),
            query_gate=gate,
        )
        pipeline.flags = cfg.feature_flags
        self._pipeline = pipeline
        try:
            if cfg.forward:  # before the receivers: nothing accepted goes unforwarded
                pipeline.forwarder = Forwarder(cfg.forward, _spool_root(url, cfg.db_path))
            self._start_http(pipeline, max_connections)
            if cfg.grpc_port is not None:
                limits = GrpcLimits(cfg.max_body_bytes, cfg.grpc_workers, max_connections,
                                    cfg.header_timeout, cfg.body_timeout)  # fmt: skip
                self._grpc, self.grpc_port = start_grpc_server(
                    pipeline, cfg.grpc_host, cfg.grpc_port, limits
                )
        except BaseException:
            self.stop()
            raise
        _log.info("collector listening: OTLP/gRPC %s, HTTP %s, store %s",
                  self.grpc_endpoint, self.http_endpoint, url.masked())  # fmt: skip
        return self

    def _start_http(self, pipeline: Pipeline, max_connections: int) -> None:
        cfg = self.config
        self._http_work = ThreadPoolExecutor(cfg.http_workers, "tf-collector-http-work")
        limits = HTTPLimits(cfg.max_body_bytes, cfg.max_inflight_bytes)
        app = create_app(pipeline, limits, self._http_work)
        connection_limits = ConnectionLimits(
            max_connections=max_connections,
            header_timeout=cfg.header_timeout,
            body_timeout=cfg.body_timeout,
            drain_bytes=cfg.max_body_bytes + 64 * 1024,
        )
        backlog = min(1024, max_connections)
        self._http = HTTPServer(app, cfg.http_host, cfg.http_port, connection_limits, backlog)
        self.http_port = self._http.port
        self._http.start()

    def stop(self, grace: float = 5.0) -> None:
        """Stop both receivers, then flush and close the database. Idempotent."""
        if self._grpc is not None:
            self._grpc.stop(grace).wait(grace + 1)
            self._grpc = None
        if self._http is not None:
            if self._pipeline is not None:
                close_live_tails(self._pipeline)  # open streams would hold the grace period
            self._http.stop(grace)
            self._http = None
        if self._http_work is not None:
            self._http_work.shutdown(wait=True, cancel_futures=True)
            self._http_work = None
        if self._pipeline is not None and self._pipeline.forwarder is not None:
            # receivers stopped: queued copies go to disk, pending ones resume at restart
            self._pipeline.forwarder.stop(min(grace, _FORWARD_GRACE))
            self._pipeline.forwarder = None
        if self._backend is not None:
            self._backend.close()
            self._backend = self._store = None
        self._stopped.set()

    def serve_forever(self) -> None:
        """Run until SIGINT or SIGTERM (main thread only), then stop cleanly."""
        stop = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
