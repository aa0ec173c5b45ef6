"""Python clients for the collector's query API.

``QueryClient`` is synchronous, ``AsyncQueryClient`` asynchronous; both expose
``.logs.query(**params)``, ``.metrics.query(**params)`` and ``.traces.query(**params)``
returning the parsed JSON answer and raising ``httpx.HTTPStatusError`` on a non-2xx
status, and ``list_metrics()`` for the metric names. The key is ``api_key=
"KEY_ID:KEY_SECRET"``, or ``key_id``/``key_secret``, or the SDK's environment
(``TELEMETRYFLOW_API_KEY_ID`` / ``TELEMETRYFLOW_API_KEY_SECRET``); the endpoint is
``TELEMETRYFLOW_QUERY_ENDPOINT`` (default ``http://127.0.0.1:4318``).

Example:
    >>> from telemetryflow.query import QueryClient
    >>> with QueryClient(api_key="tfk_id:tfs_secret") as client:  # doctest: +SKIP
    ...     client.metrics.query(name="http.server.request.duration", agg="p99", window="1h")
"""

from __future__ import annotations

from telemetryflow.query._client import (
    AGGREGATIONS,
    DEFAULT_QUERY_ENDPOINT,
    ENV_QUERY_ENDPOINT,
    AsyncQueryClient,
    QueryClient,
    QuerySettings,
    resolve_settings,
)

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_QUERY_ENDPOINT",
    "ENV_QUERY_ENDPOINT",
    "AsyncQueryClient",
    "QueryClient",
    "QuerySettings",
    "resolve_settings",
]
