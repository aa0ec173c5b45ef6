"""Query clients for the collector's logs, metrics and traces APIs (built on httpx).

Settings resolve in one place, :func:`resolve_settings`: explicit argument, then
environment, then default. Credentials are the SDK's own (``TELEMETRYFLOW_API_KEY_ID``
/ ``TELEMETRYFLOW_API_KEY_SECRET``); the endpoint is ``TELEMETRYFLOW_QUERY_ENDPOINT``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from telemetryflow._configuration.credentials import Credentials
from telemetryflow._configuration.errors import ConfigError, CredentialsError

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_QUERY_ENDPOINT",
    "ENV_QUERY_ENDPOINT",
    "AsyncQueryClient",
    "QueryClient",
    "QuerySettings",
    "resolve_settings",
]

ENV_QUERY_ENDPOINT = "TELEMETRYFLOW_QUERY_ENDPOINT"
"""Base URL of the collector's query API."""
DEFAULT_QUERY_ENDPOINT = "http://127.0.0.1:4318"
ENV_KEY_ID = "TELEMETRYFLOW_API_KEY_ID"
ENV_KEY_SECRET = "TELEMETRYFLOW_API_KEY_SECRET"  # noqa: S105 - a variable name
_PATHS = {"logs": "/v1/logs/query", "metrics": "/v1/metrics/query", "traces": "/v1/traces/query"}
_NAMES_PATH = "/v1/metrics/names"
AGGREGATIONS = ("p50", "p90", "p95", "p99", "sum", "avg", "count", "min", "max", "last", "rate")
"""``agg`` values of ``metrics.query``: percentiles (any ``pNN``), ``sum``, ``avg``,
``count``, ``min``, ``max``, ``last`` (a gauge's latest value) and ``rate`` (a
counter's increase per second)."""
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class QuerySettings:
    """Where to query and with which key (``None``: a collector run with ``--no-auth``)."""

    endpoint: str
    credentials: Credentials | None
    timeout: float

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "telemetryflow-query"}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.authorization_header()
        return headers


def _env_credentials(environ: Mapping[str, str]) -> Credentials | None:
    key_id, secret = environ.get(ENV_KEY_ID), environ.get(ENV_KEY_SECRET)
    if not key_id or not secret:
        return None
    try:
        return Credentials(key_id, secret)
    except CredentialsError as exc:
        warnings.warn(f"ignoring {ENV_KEY_ID}/{ENV_KEY_SECRET}: {exc}", stacklevel=4)
        return None


def _is_loopback(host: str) -> bool:
    return host in _LOOPBACK_NAMES or host.startswith("127.")


def _parse_api_key(api_key: object) -> Credentials:
    """``KEY_ID:KEY_SECRET`` (the form the collector's ``--key`` takes); errors name
    the argument, never its value."""
    if not isinstance(api_key, str):
        raise CredentialsError("api_key must be a string 'KEY_ID:KEY_SECRET'", field="api_key")
    key_id, sep, secret = api_key.partition(":")
    if not sep:
        raise CredentialsError(
            "api_key must be 'KEY_ID:KEY_SECRET' (tfk_...:tfs_...)", field="api_key"
        )
    return Credentials(key_id, secret)


def resolve_settings(
    endpoint: str | None = None,
    *,
    api_key: str | None = None,
    credentials: Credentials | None = None,
    key_id: str | None = None,
    key_secret: str | None = None,
    timeout: float = 10.0,
    allow_insecure: bool = False,
    environ: Mapping[str, str] | None = None,
) -> QuerySettings:
    """Explicit arguments win, then the environment, then the defaults.

    Raises:
        CredentialsError: explicit ``api_key`` or ``key_id``/``key_secret`` are malformed.
        ConfigError: more than one way of giving the key was used; the endpoint is not
            an http(s) URL; or credentials would travel in plain text to a host that
            is not loopback (pass ``allow_insecure``).
    """
    env = os.environ if environ is None else environ
    if api_key is not None:
        if credentials is not None or key_id is not None or key_secret is not None:
            raise ConfigError(
                "pass api_key, credentials or key_id/key_secret, not several", field="api_key"
            )
        credentials = _parse_api_key(api_key)
    if credentials is None and (key_id is not None or key_secret is not None):
        credentials = Credentials(key_id or "", key_secret or "")
    if credentials is None:
        credentials = _env_credentials(env)
    url = (endpoint or env.get(ENV_QUERY_ENDPOINT) or DEFAULT_QUERY_ENDPOINT).rstrip("/")
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        valid = valid and (parts.port is None or parts.port > 0)  # .port checks the range
    except ValueError:
        valid = False
    if not valid:
        # The URL itself is not repeated: it may hold user-info.
        raise ConfigError(
            "query endpoint must be an http(s) URL such as http://127.0.0.1:4318",
            field="endpoint",
        )
    if (
        credentials is not None
        and parts.scheme == "http"
        and not _is_loopback(parts.hostname or "")
        and not allow_insecure
    ):
        raise ConfigError(
            "refusing to send credentials over plain HTTP to a non-loopback host; "
            "use https:// or allow_insecure=True",
            field="endpoint",
        )
    return QuerySettings(url, credentials, timeout)


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}


def _metric_list(answer: Any) -> list[dict[str, Any]]:
    metrics = answer.get("metrics") if isinstance(answer, dict) else None
    if not isinstance(metrics, list):
        raise ValueError("the collector's metric listing has no 'metrics' list")
    return [m for m in metrics if isinstance(m, dict)]


def _repr(client: QueryClient | AsyncQueryClient) -> str:
    credentials = client.settings.credentials
    key = credentials.masked_key_id if credentials is not None else None
    endpoint = _without_userinfo(client.settings.endpoint)
    return f"{type(client).__name__}(endpoint={endpoint!r}, key_id={key!r})"


def _without_userinfo(url: str) -> str:
    """``url`` minus any ``user:password@``: a repr ends up in logs and tracebacks."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class _Signal:
    def __init__(self, client: httpx.Client, path: str) -> None:
        self._client = client
        self._path = path

    def query(self, **params: Any) -> Any:
        """POST ``params`` as JSON and return the parsed answer.

        Raises:
            httpx.HTTPStatusError: the collector answered with a non-2xx status.
        """
        response = self._client.post(self._path, json=_clean(params))
        response.raise_for_status()
        return response.json()


class _AsyncSignal:
    def __init__(self, client: httpx.AsyncClient, path: str) -> None:
        self._client = client
        self._path = path

    async def query(self, **params: Any) -> Any:
        """POST ``params`` as JSON and return the parsed answer.

        Raises:
            httpx.HTTPStatusError: the collector answered with a non-2xx status.
        """
        response = await self._client.post(self._path, json=_clean(params))
        response.raise_for_status()
        return response.json()


class QueryClient:
    """Synchronous client: ``client.logs.query(...)``, ``.metrics``, ``.traces``.

    Example:
        >>> with QueryClient() as client:  # doctest: +SKIP
        ...     client.logs.query(severity="error", time_window="1h", limit=20)

    Args:
        endpoint: base URL (default ``TELEMETRYFLOW_QUERY_ENDPOINT`` or
            ``http://127.0.0.1:4318``).
        api_key: the API key as one string, ``"KEY_ID:KEY_SECRET"``.
        credentials: the API key as :class:`Credentials`; else ``key_id``/``key_secret``;
            else the environment.
        timeout: seconds per request.
        allow_insecure: permit plain HTTP with credentials to a non-loopback host.
        transport: an httpx transport (tests, proxies).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        api_key: str | None = None,
        credentials: Credentials | None = None,
        key_id: str | None = None,
        key_secret: str | None = None,
        timeout: float = 10.0,
        allow_insecure: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = resolve_settings(
            endpoint, api_key=api_key, credentials=credentials, key_id=key_id,
            key_secret=key_secret,
            timeout=timeout, allow_insecure=allow_insecure,
        )  # fmt: skip
        self._http = httpx.Client(
            base_url=self.settings.endpoint, headers=self.settings.headers(),
            timeout=timeout, transport=transport,
        )  # fmt: skip
        self.logs = _Signal(self._http, _PATHS["logs"])
        self.metrics = _Signal(self._http, _PATHS["metrics"])
        self.traces = _Signal(self._http, _PATHS["traces"])

    def status(self) -> Any:
        """What the collector received lately for this key's project."""
        response = self._http.get("/v1/status")
        response.raise_for_status()
        return response.json()

    def list_metrics(self, **params: Any) -> list[dict[str, Any]]:
        """Every metric name of this key's project: ``name``, ``type``, ``unit``,
        ``series``, ``points`` and ``last_seen``.

        Raises:
            httpx.HTTPStatusError: the collector answered with a non-2xx status.
        """
        response = self._http.get(_NAMES_PATH, params=_clean(params))
        response.raise_for_status()
        return _metric_list(response.json())

    def __repr__(self) -> str:
        return _repr(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> QueryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncQueryClient:
    """Asynchronous client: ``await client.logs.query(...)``; same arguments as
    :class:`QueryClient` (``transport`` is an ``httpx.AsyncBaseTransport``)."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        api_key: str | None = None,
        credentials: Credentials | None = None,
        key_id: str | None = None,
        key_secret: str | None = None,
        timeout: float = 10.0,
        allow_insecure: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = resolve_settings(
            endpoint, api_key=api_key, credentials=credentials, key_id=key_id,
            key_secret=key_secret,
            timeout=timeout, allow_insecure=allow_insecure,
        )  # fmt: skip
        self._http = httpx.AsyncClient(
            base_url=self.settings.endpoint, headers=self.settings.headers(),
            timeout=timeout, transport=transport,
        )  # fmt: skip
        self.logs = _AsyncSignal(self._http, _PATHS["logs"])
        self.metrics = _AsyncSignal(self._http, _PATHS["metrics"])
        self.traces = _AsyncSignal(self._http, _PATHS["traces"])

    async def status(self) -> Any:
        """What the collector received lately for this key's project."""
        response = await self._http.get("/v1/status")
        response.raise_for_status()
        return response.json()

    async def list_metrics(self, **params: Any) -> list[dict[str, Any]]:
        """Every metric name of this key's project (see :meth:`QueryClient.list_metrics`)."""
        response = await self._http.get(_NAMES_PATH, params=_clean(params))
        response.raise_for_status()
        return _metric_list(response.json())

    def __repr__(self) -> str:
        return _repr(self)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncQueryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
