"""The documents' examples work as written: docs/collector.md's OpenTelemetry
Collector configuration, and the README's "Try it locally" commands."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "collector.md"
README = ROOT / "README.md"
COMMAND_TIMEOUT = 60


def test_otel_collector_example_is_consistent() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    config = yaml.safe_load(blocks[0])
    service = config["service"]
    assert set(service["extensions"]) <= set(config["extensions"])
    assert set(service["pipelines"]) == {"traces", "metrics", "logs"}
    for pipeline in service["pipelines"].values():
        assert set(pipeline["receivers"]) <= set(config["receivers"])
        assert set(pipeline["processors"]) <= set(config["processors"])
        assert set(pipeline["exporters"]) <= set(config["exporters"])
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    for protocol in protocols.values():
        assert protocol["auth"]["authenticator"] in config["extensions"]
    token = config["extensions"]["bearertokenauth"]["token"]
    assert token == "${env:TELEMETRYFLOW_API_KEY_ID}:${env:TELEMETRYFLOW_API_KEY_SECRET}"


def _try_it_locally() -> list[str]:
    """The command lines of the README's "Try it locally" section, comments dropped."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Try it locally", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    lines = [line.split("  #", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line]


def _shims(directory: Path) -> Path:
    """``telemetryflow`` and ``python`` on the PATH, running this checkout's code."""
    directory.mkdir()
    for name, command in (("telemetryflow", "-m telemetryflow.cli"), ("python", "")):
        shim = directory / name
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {command} "$@"\n')
        shim.chmod(0o755)
    return directory


@contextmanager
def _collector(argv: list[str], env: dict[str, str], db: Path) -> Iterator[tuple[str, str]]:
    """The README's collector command, on free ports and a temporary database."""
    proc = subprocess.Popen(
        [*argv, "--grpc-port", "0", "--http-port", "0", "--db", str(db)],
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        found: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while len(found) < 2 and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stderr.readline()
            match = re.search(r"OTLP/(gRPC|HTTP)\s+(\S+)", line)
            if match:
                found[match.group(1)] = match.group(2)
        assert len(found) == 2, f"the collector did not start (status {proc.poll()})"
        yield found["gRPC"], found["HTTP"]
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            if proc.stderr is not None:
                proc.stderr.close()


@pytest.mark.slow
def test_readme_try_it_locally_prints_the_quickstarts_data(tmp_path: Path) -> None:
    lines = _try_it_locally()
    assert lines[0] == "source .venv/bin/activate"  # how telemetryflow gets on the PATH
    collector_line = lines[1]
    assert collector_line.startswith("telemetryflow collector")
    commands = lines[2:]
    assert commands[0] == "python examples/quickstart.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRYFLOW_", "OTEL_"))}
    env["PATH"] = f"{_shims(tmp_path / 'bin')}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(ROOT / "src")
    env["HOME"] = str(tmp_path)  # no user config file
    outputs: dict[str, str] = {}
    with _collector(shlex.split(collector_line), env, tmp_path / "c.db") as (grpc, http):
        # The commands as written; only where they find the collector is ours.
        env.update(TELEMETRYFLOW_ENDPOINT=grpc, TELEMETRYFLOW_QUERY_ENDPOINT=http)
        for command in commands:
            result = subprocess.run(
                ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL, check=False,
            )  # fmt: skip
            assert result.returncode == 0, (command, result.stdout, result.stderr)
            outputs[command] = result.stdout
    quickstart = outputs["python examples/quickstart.py"]
    assert re.search(r"sent [1-9]\d* spans, [1-9]\d* logs and [1-9]\d* metric points", quickstart)
    assert "process_request" in outputs["telemetryflow traces"]
    assert "3 trace(s)" in outputs["telemetryflow traces"]
    assert outputs["telemetryflow logs"].count("processing") == 3
    listing = outputs["telemetryflow metrics"]
    for name in ("app.started", "request.duration", "queue.depth"):
        assert re.search(rf"^{re.escape(name)}\s", listing, re.M), listing
    p99 = outputs["telemetryflow metrics request.duration --agg p99"]
    assert "1 series of request.duration" in p99
    assert re.search(r"\d+(\.\d+)? ms", p99), p99  # a value in its unit, not 0.0103
