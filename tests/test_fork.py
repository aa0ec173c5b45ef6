"""Children forked while the parent is exporting export their own data and shut down.

gRPC core rebuilds its threads in a child only when no thread was inside a gRPC call
at the moment of ``fork()``; otherwise the child's first call could wait forever and
its ``shutdown()`` hang in closing the channel. The harness (``apps/fork_harness.py``)
forks 60 children from a process that exports without pause, in its own process so
that the SDK is the only gRPC user there; the receiver lives here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from _support import builder_for
from telemetryflow import TelemetryFlowClient
from telemetryflow.testing import OTLPReceiver

HARNESS = Path(__file__).parent / "apps" / "fork_harness.py"
CHILDREN = 60
SPANS_PER_CHILD = 20
SHUTDOWN_TIMEOUT = 5.0


def _run_harness(receiver: OTLPReceiver, protocol: str) -> tuple[dict[str, object], str]:
    endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
    sys.path.insert(0, str(HARNESS.parent))
    try:
        from support import repo_env  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(HARNESS.parent))
    result = subprocess.run(
        [sys.executable, str(HARNESS), endpoint, protocol, str(CHILDREN)],
        capture_output=True,
        text=True,
        timeout=180,
        env=repo_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_children_forked_during_exports_deliver_and_shut_down(
    receiver: OTLPReceiver, protocol: str
) -> None:
    summary, stderr = _run_harness(receiver, protocol)
    assert summary["hung"] == [], f"children that never exited: {summary['hung']}"
    assert summary["failed"] == []
    shutdown_seconds = summary["shutdown_seconds"]
    assert isinstance(shutdown_seconds, dict) and len(shutdown_seconds) == CHILDREN
    assert all(took <= SHUTDOWN_TIMEOUT for took in shutdown_seconds.values())
    per_child = Counter(s.attributes["child"] for s in receiver.spans() if s.name == "child")
    missing = [i for i in range(CHILDREN) if per_child[i] < SPANS_PER_CHILD]
    assert missing == [], f"children whose spans did not all arrive: {missing}"
    # The cause itself: gRPC says so when a fork catches one of our calls in flight.
    assert "skipping fork() handlers" not in stderr


def _forked_child_delivers(client: TelemetryFlowClient, receiver: OTLPReceiver) -> bool:
    """Fork; the child records a span, flushes and shuts down. True if it all arrived
    and the child exited by itself (it is killed after a bound otherwise)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            with client.span("from-the-child"):
                pass
            client.flush(5)
            client.shutdown(timeout=5)
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0 and receiver.wait_for(
                lambda: "from-the-child" in receiver.span_names(), 5
            )
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("held", ["sender", "stats"])
def test_a_lock_held_by_an_export_thread_at_fork_is_free_in_the_child(
    receiver: OTLPReceiver, held: str
) -> None:
    """fork() copies a lock held by another thread, but not that thread: the child's
    export (or its shutdown) would wait on it forever."""
    # Over HTTP: this process also runs the receiver's gRPC server, and the child
    # must meet only the lock under test.
    client = builder_for(receiver, "http").build()
    client.initialize()
    pipeline = client._pipeline
    assert pipeline is not None
    lock = pipeline.sender._lock if held == "sender" else pipeline.stats._lock
    with lock:  # as an export thread holds it, at the instant a server forks
        delivered = _forked_child_delivers(client, receiver)
    client.shutdown(timeout=5)
    assert delivered


def test_initialize_imports_what_the_first_export_needs(receiver: OTLPReceiver) -> None:
    """A child forked in the middle of an export thread's first import would inherit a
    half-initialised module and its lock: everything is imported by initialize()."""
    script = (
        "import sys\n"
        "from telemetryflow import TelemetryFlowBuilder\n"
        "c = (TelemetryFlowBuilder().with_api_key('tfk_a', 'tfs_b').with_service('s')\n"
        f"     .with_endpoint('{receiver.grpc_endpoint}').with_global_providers(False).build())\n"
        "c.initialize()\n"
        "print(' '.join(m for m in ('grpc._channel', 'telemetryflow._exporting.encode') "
        "if m in sys.modules))\n"
        "import os; os._exit(0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.split() == ["grpc._channel", "telemetryflow._exporting.encode"], (
        result.stderr
    )
