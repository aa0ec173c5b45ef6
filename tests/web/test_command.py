"""``telemetryflow collector`` prints the web view's address, and serves it there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from telemetryflow.collector.web import CSP

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_the_banner_prints_the_view_and_the_view_answers_there(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    key = "tfk_webcli:tfs_webcli@webcli"
    command = [sys.executable, "-m", "telemetryflow.collector", "--db", str(tmp_path / "c.db"),
               "--no-grpc", "--http-port", "0", "--key", key]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 20
        while url is None and time.monotonic() < deadline:
            match = re.search(r"web view\s+(http://\S+)", proc.stderr.readline())
            url = match.group(1) if match else None
        assert url is not None and url.endswith("/ui")
        page = httpx.get(url, follow_redirects=True)
        assert page.status_code == 401  # keys are on: the sign-in form
        assert page.url.path == "/ui"  # the overview, behind the sign-in form
        assert 'action="/ui/signin"' in page.text
        assert page.headers["content-security-policy"] == CSP
        root = httpx.get(url.removesuffix("/ui") + "/", headers={"Accept": "text/html"})
        assert root.headers["location"] == "/ui"
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        if proc.stderr is not None:
            proc.stderr.close()
