"""Fixtures for the web view tests: collectors, the browser, and where screenshots go.

Browser tests drive the system's Chromium (Debian's ``chromium`` package) through
Playwright; nothing downloads a browser. They skip when Chromium is missing on a
developer's machine, and fail in CI (``CI=true``), which installs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from web_helpers import WebServer, start_web_collector

CHROMIUM = os.environ.get("TELEMETRYFLOW_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def open_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """A collector with keys off (loopback only), shared by one test module."""
    server = WebServer(start_web_collector(tmp_path_factory.mktemp("open"), auth=False, keys=()))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keyed_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """A collector with two keys, each its own project."""
    server = WebServer(start_web_collector(tmp_path_factory.mktemp("keyed")))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module."""
    in_ci = os.environ.get("CI") == "true"
    executable = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if executable is None:
        if in_ci:
            pytest.fail(f"CI must run the browser tests, but {CHROMIUM} is missing")
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
    try:
        from playwright import sync_api
    except ImportError:
        if in_ci:
            pytest.fail("CI must run the browser tests, but playwright is not installed")
        pytest.skip("playwright is not installed: pip install 'telemetryflow[web-tests]'")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
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
