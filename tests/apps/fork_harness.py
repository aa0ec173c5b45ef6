"""Fork children while this process exports continuously; report what became of each.

Run as ``python fork_harness.py ENDPOINT PROTOCOL CHILDREN``. The receiver lives in
another process (the test's), so the only gRPC user here is the SDK. Two threads
record spans without pause; meanwhile the main thread forks CHILDREN children, each
recording its own 20 spans, flushing and shutting down with a timeout. A child that
has not exited when the harness's own deadline comes is reported as hung and killed.
The last line of output is a JSON summary.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from datetime import timedelta

from telemetryflow import TelemetryFlowBuilder

SPANS_PER_CHILD = 20
SHUTDOWN_TIMEOUT = 5.0
WAIT_FOR_CHILDREN = 60.0


def _client(endpoint: str, protocol: str) -> object:
    builder = (
        TelemetryFlowBuilder()
        .with_api_key("tfk_fork_harness", "tfs_fork_harness_secret")
        .with_service("fork-harness")
        .with_endpoint(endpoint)
        .with_insecure()
        .with_global_providers(False)
        .with_batch_settings(timeout=timedelta(milliseconds=20))
        .with_queue_size(50_000)
    )
    builder = builder.with_http() if protocol == "http" else builder.with_grpc()
    client = builder.build()
    client.initialize()
    return client


def _child(client: object, index: int, report: int) -> None:
    """Record, flush, shut down; write how long shutdown took; exit without atexit."""
    code = 1
    try:
        for i in range(SPANS_PER_CHILD):
            with client.span("child", attributes={"child": index, "i": i}):  # type: ignore[attr-defined]
                pass
        client.flush(10)  # type: ignore[attr-defined]
        started = time.monotonic()
        client.shutdown(timeout=SHUTDOWN_TIMEOUT)  # type: ignore[attr-defined]
        took = time.monotonic() - started
        os.write(report, f"{index} {took:.3f}\n".encode())
        code = 0
    finally:
        os._exit(code)


def main() -> None:
    endpoint, protocol, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = _client(endpoint, protocol)
    stop = threading.Event()

    def pump() -> None:
        i = 0
        while not stop.is_set() and i < 2_000_000:
            with client.span("parent", attributes={"i": i}):  # type: ignore[attr-defined]
                pass
            i += 1
            if i % 20 == 0:
                time.sleep(0.001)

    pumps = [threading.Thread(target=pump, daemon=True) for _ in range(2)]
    for thread in pumps:
        thread.start()
    time.sleep(0.3)  # exports are under way before the first fork
    read_end, write_end = os.pipe()
    children: dict[int, int] = {}
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            _child(client, index, write_end)
        children[pid] = index
        time.sleep(0.01)
    os.close(write_end)
    exits: dict[int, int] = {}
    deadline = time.monotonic() + WAIT_FOR_CHILDREN
    while len(exits) < len(children) and time.monotonic() < deadline:
        for pid in children.keys() - exits.keys():
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                exits[pid] = os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    hung = sorted(children[pid] for pid in children.keys() - exits.keys())
    for pid in children.keys() - exits.keys():
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    stop.set()
    for thread in pumps:
        thread.join(5)
    with os.fdopen(read_end) as reports:
        shutdown_seconds = {int(i): float(t) for i, t in (line.split() for line in reports)}
    client.shutdown(timeout=5)  # type: ignore[attr-defined]
    failed = sorted(children[pid] for pid, code in exits.items() if code != 0)
    print(json.dumps({"hung": hung, "failed": failed, "shutdown_seconds": shutdown_seconds}))


if __name__ == "__main__":
    main()
