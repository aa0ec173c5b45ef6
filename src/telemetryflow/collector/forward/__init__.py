"""Forwarding: a copy of everything the collector accepts, sent on to upstreams.

``telemetryflow collector --forward URL`` (repeatable) sends each request, after its
rows are stored, to every upstream through the SDK's own export path (batching,
retries with backoff, accounting, the persistent buffer). Each upstream has its own
bounded queue, threads and spool, so a slow or dead one holds up nothing else.
See ``docs/forwarding.md``.
"""

from telemetryflow.collector.forward._config import (
    ENV_FORWARD,
    ENV_FORWARD_HEADERS,
    ForwardConfig,
    resolve_forward,
)
from telemetryflow.collector.forward._forwarder import Forwarder, spool_root
from telemetryflow.collector.forward._link import LinkLimits
from telemetryflow.collector.forward._upstream import Upstream, parse_header, parse_upstream

__all__ = [
    "ENV_FORWARD",
    "ENV_FORWARD_HEADERS",
    "ForwardConfig",
    "Forwarder",
    "LinkLimits",
    "Upstream",
    "parse_header",
    "parse_upstream",
    "resolve_forward",
    "spool_root",
]
