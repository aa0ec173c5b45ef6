"""Pre-fork servers: gunicorn --preload with 4 workers, 4 x 1,000 requests, all exported.

The client is built and used in the gunicorn master (the app module initializes it at
import and serves a warm-up request); every worker inherits it. Each worker must
rebuild its export threads and connection, report under its own identity, export all
of its own requests, never re-export the master's queued span, and exit cleanly.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from _support import KEY_ID, KEY_SECRET
from telemetryflow.testing import OTLPReceiver

APPS = Path(__file__).parent / "apps"
SRC = Path(__file__).parents[1] / "src"  # the code under test, not an installed copy
WORKERS = 4
REQUESTS = 4 * 1000
SERVER_KIND = 2  # SPAN_KIND_SERVER


def _environment(receiver: OTLPReceiver) -> dict[str, str]:
    sys.path.insert(0, str(APPS))
    try:
        from support import repo_env  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(APPS))
    env: dict[str, str] = repo_env(
        TELEMETRYFLOW_API_KEY_ID=KEY_ID,
        TELEMETRYFLOW_API_KEY_SECRET=KEY_SECRET,
        TELEMETRYFLOW_ENDPOINT=receiver.grpc_endpoint,
        TELEMETRYFLOW_INSECURE="true",
        TELEMETRYFLOW_SERVICE_NAME="prefork",
        PYTHONPATH=os.pathsep.join([str(APPS), str(SRC)]),
    )
    return env


def _start(receiver: OTLPReceiver, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        str(WORKERS),
        "--preload",
        "--bind",
        "127.0.0.1:0",
        "-c",
        str(APPS / "gunicorn_conf.py"),
        "--chdir",
        str(APPS),
        "flask_gunicorn_app:app",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=_environment(receiver), stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        text = log.read_text(errors="replace")
        port = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
        if port and text.count("Booting worker") >= WORKERS:
            return process, int(port.group(1))
        time.sleep(0.05)
    process.kill()
    process.wait(5)
    raise AssertionError("gunicorn did not start:\n" + log.read_text(errors="replace"))


@pytest.mark.slow
def test_four_preforked_workers_export_all_of_their_own_requests(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    log = tmp_path / "gunicorn.log"
    process, port = _start(receiver, log)
    try:
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
            ThreadPoolExecutor(8) as pool,
        ):
            answers = list(pool.map(lambda i: http.get(f"/users/{i}").json(), range(REQUESTS)))
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(60)
    assert exit_code == 0, log.read_text(errors="replace")
    master = answers[0]["master_pid"]
    workers = {a["pid"] for a in answers}
    assert master not in workers and len(workers) >= 2

    def server_spans() -> list[object]:
        return [s for s in receiver.spans() if s.span.kind == SERVER_KIND]

    assert receiver.wait_for(lambda: len(server_spans()) >= REQUESTS + 1, 20)
    spans = [s for s in receiver.spans() if s.span.kind == SERVER_KIND]
    by_pid: dict[int, int] = {}
    for record in spans:
        pid = record.resource["process.pid"]
        by_pid[pid] = by_pid.get(pid, 0) + 1
    # The master's warm-up span is exported once, by the master only.
    assert by_pid.pop(master) == 1
    assert set(by_pid) == workers
    assert sum(by_pid.values()) == REQUESTS
    served = {pid: sum(1 for a in answers if a["pid"] == pid) for pid in workers}
    assert by_pid == served
    instance_ids = {s.resource["service.instance.id"] for s in spans}
    assert len(instance_ids) == len(workers) + 1
