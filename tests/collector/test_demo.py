"""telemetryflow demo: runs end to end, prints what arrived, and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("flask")


@pytest.mark.parametrize("transport", [[], ["--http"]])
def test_demo_runs_and_cleans_up(
    tmp_path: Path, subprocess_env: dict[str, str], transport: list[str]
) -> None:
    env = {**subprocess_env, "TMPDIR": str(tmp_path)}
    code = "import sys; from telemetryflow.cli import main; sys.exit(main(['demo', *sys.argv[1:]]))"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code, "--seconds", "1", *transport],
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
    assert list(tmp_path.iterdir()) == []  # the temporary database is gone
