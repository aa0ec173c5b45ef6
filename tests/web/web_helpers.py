"""Keys, the SDK client and page helpers shared by the web view tests."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from telemetryflow import TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow.collector import ApiKey, Collector, CollectorConfig

KEY_A = ApiKey("tfk_webalpha01", "tfs_web-alpha-secret-01", "alpha")
KEY_B = ApiKey("tfk_webbeta002", "tfs_web-beta-secret-002", "beta")
XSS = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
"""A payload that would fire a dialog if any view let it into markup."""


def sdk_client(collector: Collector, service: str, key: ApiKey = KEY_A) -> TelemetryFlowClient:
    """A real SDK client exporting to ``collector`` over OTLP/HTTP."""
    client = (
        TelemetryFlowBuilder()
        .with_api_key(key.key_id, key.key_secret)
        .with_service(service, "1.0.0")
        .with_endpoint(collector.http_endpoint.split("://")[1])
        .with_http()
        .with_insecure()
        .with_global_providers(False)
        .with_queue_size(8192)
        .build()
    )
    client.initialize()
    return client


def wait_for(check: Any, what: str, timeout: float = 15.0) -> Any:
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def traces_of(base: str, service: str, key: ApiKey | None = KEY_A) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key.key_id}:{key.key_secret}"} if key else {}
    answer = httpx.get(f"{base}/ui/api/traces", params={"service": service}, headers=headers)
    answer.raise_for_status()
    return list(answer.json()["traces"])


def start_web_collector(tmp: Path, **overrides: Any) -> Collector:
    settings: dict[str, Any] = {
        "db_path": str(tmp / "web.db"), "grpc_port": None, "http_port": 0,
        "keys": (KEY_A, KEY_B), "rate_limit": 0.0,
    }  # fmt: skip
    settings.update(overrides)
    return Collector(CollectorConfig(**settings)).start()


class WebServer:
    """The collector and the base URL its web view answers on."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.base = collector.http_endpoint
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._routes: list[Any] = []
        if httpx.get(self.base + "/ui/static/app.css").status_code != 200:
            self._serve_separately()

    def _serve_separately(self) -> None:
        # until the collector's own HTTP app mounts the view, serve its routes beside it
        import uvicorn
        from starlette.applications import Starlette

        from telemetryflow.collector.web import routes

        pipeline = self.collector._http.pipeline  # type: ignore[union-attr]
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self._routes = routes(pipeline)
        config = uvicorn.Config(Starlette(routes=self._routes), log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        daemon=True)  # fmt: skip
        self._thread.start()
        self.base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            if self._server.started:
                break
            threading.Event().wait(0.02)

    def routes(self) -> list[Any]:
        """The routes answering on :attr:`base`."""
        return list(self._routes)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            assert self._thread is not None
            self._thread.join(10)
        self.collector.stop()
