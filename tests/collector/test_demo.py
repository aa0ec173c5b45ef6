"""telemetryflow demo: runs end to end, prints what arrived, and leaves nothing behind."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("flask")


CODE = "import sys; from telemetryflow.cli import main; sys.exit(main(['demo', *sys.argv[1:]]))"


@pytest.mark.parametrize("transport", [[], ["--http"]])
def test_demo_runs_and_cleans_up(
    tmp_path: Path, subprocess_env: dict[str, str], transport: list[str]
) -> None:
    env = {**subprocess_env, "TMPDIR": str(tmp_path)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", CODE, "--seconds", "1", *transport],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert elapsed < 15
    header = next(line for line in out.splitlines() if line.startswith("ROUTE"))
    assert header.split() == ["ROUTE", "REQUESTS", "RATE/S", "P50_MS", "P99_MS", "ERRORS"]
    routes = {line.split()[1] for line in out.splitlines() if line.startswith(("GET ", "POST "))}
    assert {"/products", "/checkout"} <= routes
    assert "Worker: " in out and "jobs" in out
    assert "POST /checkout [demo-shop]" in out  # the trace tree's root
    assert "  charge card [demo-shop]" in out  # ... and an indented child
    assert re.search(r"web view\s+http://127\.0\.0\.1:\d+/ui ", out)
    assert list(tmp_path.iterdir()) == []  # the temporary database is gone


def _lines(stream: object) -> tuple[queue.Queue[str], threading.Thread]:
    """The stream's lines, read by a thread so that waiting on them can time out."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return lines, reader


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_keeps_the_view_up_until_a_signal(
    tmp_path: Path, subprocess_env: dict[str, str], stop: signal.Signals
) -> None:
    env = {**subprocess_env, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CODE, "--seconds", "1", "--serve"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        (lines, reader), seen, url = _lines(proc.stdout), [], None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            match = re.search(r"Serving the web view at (http://127\.0\.0\.1:\d+/ui)", seen[-1])
            url = match.group(1) if match else None
        assert url is not None, "".join(seen)
        time.sleep(0.5)  # the demo's traffic is over: the view still answers
        traces = httpx.get(url + "/api/traces", params={"service": "demo-shop"}, timeout=10)
        assert traces.status_code == 200
        assert traces.json()["traces"], "the demo's traces are in the view"
        assert httpx.get(url + "/traces", timeout=10).status_code == 200
        proc.send_signal(stop)
        assert proc.wait(timeout=30) == 0
        reader.join(10)  # the pipe is closed: the reader ends
        rest = []
        while not lines.empty():
            rest.append(lines.get())
        assert "Stopping." in "".join(rest)
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/traces", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert list(tmp_path.iterdir()) == []  # the temporary database is gone
