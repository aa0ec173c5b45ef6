"""Fixtures for the web view tests: collectors, the browser, and where screenshots go.

Browser tests drive the system's Chromium (Debian's ``chromium`` package) through
Playwright; nothing downloads a browser. They skip when Chromium is missing on a
developer's machine, and fail in CI (``CI=true``), which installs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from web_helpers import KEY_A, KEY_B

from telemetryflow.collector import Collector, CollectorConfig

CHROMIUM = os.environ.get("TELEMETRYFLOW_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _start(tmp: Path, **overrides: Any) -> Collector:
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


@pytest.fixture(scope="module")
def open_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """A collector with keys off (loopback only), shared by one test module."""
    server = WebServer(_start(tmp_path_factory.mktemp("open"), auth=False, keys=()))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keyed_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """A collector with two keys, each its own project."""
    server = WebServer(_start(tmp_path_factory.mktemp("keyed")))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module."""
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests, but {CHROMIUM} is missing")
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context per test: no cookies carried over."""
    context = browser.new_context(viewport={"width": 1280, "height": 760})
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    tab.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    tab.requested = requested
    # a 401 a test asks for is logged by the browser as a failed resource load
    tab.allowed_errors = ["status of 401"]
    yield tab
    context.close()
    unexpected = [p for p in problems if not any(a in p for a in tab.allowed_errors)]
    assert unexpected == [], "the page reported errors"
    origins = {urlsplit(url).netloc for url in requested if not url.startswith("data:")}
    assert len(origins) <= 1, f"requests left the origin: {sorted(origins)}"


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
