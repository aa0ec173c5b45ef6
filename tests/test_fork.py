"""Children forked while the parent is exporting export their own data and shut down.

gRPC core rebuilds its threads in a child only when no thread was inside a gRPC call
at the moment of ``fork()``; otherwise the child's first call could wait forever and
its ``shutdown()`` hang in closing the channel. The harness (``apps/fork_harness.py``)
forks 60 children from a process that exports without pause, in its own process so
that the SDK is the only gRPC user there; the receiver lives here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

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
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
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
