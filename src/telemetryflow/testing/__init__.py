"""Test helpers for TelemetryFlow users and for TelemetryFlow itself.

- :func:`capture` / the ``telemetry`` pytest fixture: a client whose exports are
  decoded in memory, to assert on your own telemetry without a network.
- :class:`OTLPReceiver`: a real OTLP gRPC + HTTP receiver on loopback that records
  what arrives and fails on demand (status codes, delays, outages), for tests that
  must cross a real wire.
"""

from telemetryflow.testing._memory import InMemoryTransport, TelemetryCapture, capture
from telemetryflow.testing._receiver import Fault, OTLPReceiver
from telemetryflow.testing._records import (
    LogEntry,
    MetricRecord,
    ReceivedRequest,
    SpanRecord,
    attrs,
)
from telemetryflow.testing._tls import TLSFiles, make_test_certificates

__all__ = [
    "Fault",
    "InMemoryTransport",
    "LogEntry",
    "MetricRecord",
    "OTLPReceiver",
    "ReceivedRequest",
    "SpanRecord",
    "TLSFiles",
    "TelemetryCapture",
    "attrs",
    "capture",
    "make_test_certificates",
]
