"""The TelemetryFlow local collector.

One command (``telemetryflow collector``) runs an OTLP receiver on gRPC and HTTP that
stores traces, metrics and logs in an embedded SQLite database and answers the query
API. Past one machine, keep the same SDK and point it at an OpenTelemetry Collector
or any OTLP backend instead (see ``docs/collector.md``).

Example:
    >>> from telemetryflow.collector import Collector, CollectorConfig
    >>> config = CollectorConfig(db_path="dev.db", auth=False)
    >>> with Collector(config) as collector:  # doctest: +SKIP
    ...     ...
"""

from __future__ import annotations

from telemetryflow.collector._collector import Collector
from telemetryflow.collector._config import (
    ApiKey,
    CollectorConfig,
    parse_key_spec,
    resolve_keys,
)

__all__ = ["ApiKey", "Collector", "CollectorConfig", "parse_key_spec", "resolve_keys"]
