"""The smallest complete program: configure at startup, record, shut down cleanly.

Run a local collector first (``telemetryflow collector --no-auth``), then::

    python examples/quickstart.py

Configuration comes from the environment when set (``TELEMETRYFLOW_*``/``OTEL_*``),
otherwise it defaults to the local collector.
"""

from __future__ import annotations

import os
import time

from telemetryflow import TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow.application.commands import SeverityLevel, SpanKind


def build_client() -> TelemetryFlowClient:
    """Builder in app startup: environment first, local collector as the fallback."""
    os.environ.setdefault("TELEMETRYFLOW_API_KEY_ID", "tfk_local_demo")
    os.environ.setdefault("TELEMETRYFLOW_API_KEY_SECRET", "tfs_local_demo")
    os.environ.setdefault("TELEMETRYFLOW_SERVICE_NAME", "quickstart")
    os.environ.setdefault("TELEMETRYFLOW_ENDPOINT", "127.0.0.1:4317")
    os.environ.setdefault("TELEMETRYFLOW_INSECURE", "true")
    return TelemetryFlowBuilder().with_auto_configuration().build()


def main() -> None:
    # The with-block initializes the client and shuts it down (flushing) at the end.
    with build_client() as client:
        client.increment_counter("app.started")
        for attempt in range(3):
            started = time.perf_counter()
            with client.span("process_request", SpanKind.SERVER, {"attempt": attempt}) as sid:
                client.add_span_event(sid, "started")
                client.log("processing", SeverityLevel.INFO, {"attempt": attempt})
                time.sleep(0.01)
            client.record_histogram("request.duration", time.perf_counter() - started, unit="s")
        client.record_gauge("queue.depth", 3)
        # Send it now, so the status below counts what reached the collector.
        client.flush(timeout=10)
        status = client.get_status()
        print(
            f"sent {status['spans_sent']} spans, {status['logs_sent']} logs and "
            f"{status['metrics_sent']} metric points to {status['endpoint']}"
        )
        if status["export_requests_failed"]:
            print(f"{status['export_requests_failed']} export request(s) failed: "
                  "is the collector running (telemetryflow collector --no-auth)?")  # fmt: skip


if __name__ == "__main__":
    main()
