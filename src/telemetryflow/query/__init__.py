"""Python clients for the collector's query API.

``QueryClient`` is synchronous, ``AsyncQueryClient`` asynchronous; both expose
``.logs.query(**params)``, ``.metrics.query(**params)`` and ``.traces.query(**params)``
returning the parsed JSON answer and raising ``httpx.HTTPStatusError`` on a non-2xx
status. They read the SDK's credentials from ``TELEMETRYFLOW_API_KEY_ID`` /
``TELEMETRYFLOW_API_KEY_SECRET`` and the endpoint from ``TELEMETRYFLOW_QUERY_ENDPOINT``
(default ``http://127.0.0.1:4318``).

Example:
    >>> from telemetryflow.query import QueryClient
    >>> with QueryClient() as client:  # doctest: +SKIP
    ...     client.metrics.query(name="http.server.duration", agg="p99", window="1h")
"""

from __future__ import annotations

from telemetryflow.query._client import (
    DEFAULT_QUERY_ENDPOINT,
    ENV_QUERY_ENDPOINT,
    AsyncQueryClient,
    QueryClient,
    QuerySettings,
    resolve_settings,
)

__all__ = [
    "DEFAULT_QUERY_ENDPOINT",
    "ENV_QUERY_ENDPOINT",
    "AsyncQueryClient",
    "QueryClient",
    "QuerySettings",
    "resolve_settings",
]
