"""``telemetryflow collector --store``: a chDB store served end to end, and clear failures."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from collector_helpers import make_span, trace_request

from telemetryflow import cli
from telemetryflow.collector import CollectorConfig

PB = {"Content-Type": "application/x-protobuf"}
T1 = "11111111111111111111111111111111"


def _banner(proc: subprocess.Popen[str]) -> dict[str, str]:
    """The banner's lines by label, read until the auth line (bounded)."""
    assert proc.stderr is not None
    lines: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while "auth" not in lines and time.monotonic() < deadline:
        match = re.match(r"\s+(OTLP/HTTP|store|database|auth)\s+(\S+)", proc.stderr.readline())
        if match:
            lines[match.group(1)] = match.group(2)
    return lines


def test_the_collector_command_serves_a_chdb_store(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    store = f"chdb://{tmp_path}/chdb?database=cli"
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemetryflow.collector", "--no-auth", "--grpc-port", "0",
         "--http-port", "0"],
        stderr=subprocess.PIPE, text=True,
        env={**subprocess_env, "TELEMETRYFLOW_COLLECTOR_STORE": store},
    )  # fmt: skip
    try:
        banner = _banner(proc)
        assert banner["store"] == store
        url = banner["OTLP/HTTP"]
        body = trace_request("shop", [make_span(T1, "a000000000000001", "GET /cart")])
        sent = httpx.post(f"{url}/v1/traces", content=body.SerializeToString(), headers=PB)
        assert sent.status_code == 200
        answer = httpx.get(f"{url}/v1/traces/query", params={"trace_id": T1}).json()
        assert [t["root_name"] for t in answer["traces"]] == ["GET /cart"]
        status = httpx.get(f"{url}/v1/status").json()
        assert (status["project"], status["received"]["spans"]) == ("default", 1)
    finally:
        proc.terminate()
        code = proc.wait(30)
        assert proc.stderr is not None
        proc.stderr.close()
    assert code == 0
    assert (tmp_path / "chdb").is_dir()


def test_a_missing_extra_is_one_line_naming_it(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    code = (
        "import sys\n"
        "sys.modules['chdb'] = None\nsys.modules['chdb.session'] = None\n"
        "from telemetryflow import cli\n"
        f"sys.exit(cli.main(['collector', '--no-auth', '--store', 'chdb://{tmp_path}/x', "
        "'--grpc-port', '0', '--http-port', '0']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=subprocess_env, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "pip install 'telemetryflow[clickhouse]'" in lines[0]


def test_an_unreachable_server_is_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main([
        "collector", "--no-auth", "--grpc-port", "0", "--http-port", "0",
        "--store", "clickhouse://reader:hunter2-secret@127.0.0.1:1/otel",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "hunter2-secret" not in err
    assert "clickhouse://reader:***@127.0.0.1:1/otel" in err
    assert "Traceback" not in err


def test_a_bad_store_url_is_refused_by_the_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(["collector", "--no-auth", "--store", "postgres://u:pw-secret@h/db"])
    err = capsys.readouterr().err
    assert code == 2 and "sqlite:///" in err and "pw-secret" not in err


def test_the_configuration_never_shows_the_password() -> None:
    config = CollectorConfig(store="clickhouse://u:pw-secret@127.0.0.1/otel", auth=False)
    assert "pw-secret" not in repr(config)
